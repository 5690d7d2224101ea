// PgLeader: one server at a time does the chores of all (retention, the lease sweeper):
// the one holding a session advisory lock, on a connection of its own. If that server
// dies or its connection breaks, PostgreSQL releases the lock, and another server's next
// TryLead takes it over.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "server/storage/pg/connection.h"

namespace jobstream::storage::pg {

class PgLeader {
 public:
  // `key` names the lock (every server uses the same key for the same chores).
  PgLeader(std::string url, int64_t key) : url_(std::move(url)), key_(key) {}

  // Whether this server leads now: it held the lock and its connection still answers, or
  // it takes the lock now. Never blocks on another server. Not thread-safe: one caller.
  bool TryLead();
  // The backend holding (or trying for) the lock; 0 when not connected.
  int backend_pid() const { return conn_ != nullptr ? PQbackendPID(conn_->raw()) : 0; }

 private:
  const std::string url_;
  const int64_t key_;
  std::unique_ptr<PgConnection> conn_;
  bool leading_ = false;
};

// The lock key of the chores every server would otherwise repeat.
inline constexpr int64_t kChoresLock = 0x6a6f6273636872;  // "jobschr"
// The lock key of firing schedules (a lock of its own: firing must not wait on a sweep).
inline constexpr int64_t kSchedulesLock = 0x6a6f6273736368;  // "jobssch"

}  // namespace jobstream::storage::pg
