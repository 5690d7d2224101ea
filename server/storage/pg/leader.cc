#include "server/storage/pg/leader.h"

namespace jobstream::storage::pg {

bool PgLeader::TryLead() {
  if (conn_ != nullptr && !conn_->ok()) conn_.reset();
  if (conn_ == nullptr) {
    leading_ = false;  // a lock dies with its session
    auto conn = PgConnection::Connect(url_);
    if (!conn.ok()) return false;
    conn_ = *std::move(conn);
  }
  if (leading_) {
    // Still the same session, so still the lock's holder?
    if (conn_->ExecScript("SELECT 1").ok()) return true;
    conn_.reset();
    leading_ = false;
    return false;
  }
  auto took = conn_->Exec("SELECT pg_try_advisory_lock($1)", {PgParam::Int(key_)});
  if (!took.ok()) {
    if (!conn_->ok()) conn_.reset();
    return false;
  }
  leading_ = took->rows() == 1 && took->Get(0, 0) == "t";
  return leading_;
}

}  // namespace jobstream::storage::pg
