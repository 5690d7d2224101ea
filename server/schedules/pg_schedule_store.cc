// Schedules in PostgreSQL's schedules table: the record beside the columns that find it.
// Update's version check is in its WHERE clause, so two servers' writes cannot both win.
#include "absl/strings/str_cat.h"
#include "server/schedules/schedule_record.h"
#include "server/schedules/schedule_store.h"
#include "server/storage/pg/pg_store.h"

namespace jobstream::schedules {
namespace {

using storage::pg::PgConnection;
using storage::pg::PgParam;
using storage::pg::PgResult;

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no schedule \"", id, "\""));
}

// Rows of (record) as binary.
absl::StatusOr<std::vector<StoredSchedule>> Decode(const PgResult& rows) {
  std::vector<StoredSchedule> out;
  for (int r = 0; r < rows.rows(); ++r) {
    auto s = DecodeSchedule(rows.Get(r, 0));
    if (!s.ok()) return s.status();
    out.push_back(*std::move(s));
  }
  return out;
}

class PgScheduleStore : public ScheduleStore {
 public:
  explicit PgScheduleStore(storage::pg::PgPool* pool) : pool_(pool) {}

  absl::Status Create(StoredSchedule& s) override {
    s.version = 1;
    return pool_->Use([&](PgConnection& conn) -> absl::Status {
      auto inserted = conn.Exec(
          "INSERT INTO schedules (tenant, id, record, version, wake_ms) VALUES ($1, $2, $3, 1, $4) "
          "ON CONFLICT DO NOTHING",
          {PgParam::Text(s.schedule.tenant()), PgParam::Text(s.schedule.id()),
           PgParam::Binary(EncodeSchedule(s)), PgParam::Int(WakeMs(s))});
      if (!inserted.ok()) return inserted.status();
      if (inserted->affected() == 0) {
        return absl::AlreadyExistsError(
            absl::StrCat("schedule \"", s.schedule.id(), "\" already exists"));
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<StoredSchedule> Get(const std::string& tenant,
                                     const std::string& id) const override {
    std::vector<StoredSchedule> found;
    absl::Status s = Select("SELECT record FROM schedules WHERE tenant = $1 AND id = $2",
                            {PgParam::Text(tenant), PgParam::Text(id)}, &found);
    if (!s.ok()) return s;
    if (found.empty()) return NotFound(id);
    return std::move(found[0]);
  }

  absl::StatusOr<std::vector<StoredSchedule>> List(const auth::Scope& scope,
                                                   const std::string& after_tenant,
                                                   const std::string& after_id,
                                                   int limit) const override {
    std::vector<StoredSchedule> found;
    absl::Status s = Select(
        "SELECT record FROM schedules WHERE ($1 OR tenant = $2) AND (tenant, id) > ($3, $4) "
        "ORDER BY tenant, id LIMIT $5",
        {PgParam::Text(scope.all_tenants ? "true" : "false"), PgParam::Text(scope.tenant),
         PgParam::Text(after_tenant), PgParam::Text(after_id), PgParam::Int(limit)},
        &found);
    if (!s.ok()) return s;
    return found;
  }

  absl::Status Update(StoredSchedule& s) override {
    StoredSchedule next = s;
    ++next.version;
    return pool_->Use([&](PgConnection& conn) -> absl::Status {
      auto updated = conn.Exec(
          "UPDATE schedules SET record = $3, version = $4, wake_ms = $5 "
          "WHERE tenant = $1 AND id = $2 AND version = $6",
          {PgParam::Text(s.schedule.tenant()), PgParam::Text(s.schedule.id()),
           PgParam::Binary(EncodeSchedule(next)), PgParam::Int(next.version),
           PgParam::Int(WakeMs(next)), PgParam::Int(s.version)});
      if (!updated.ok()) return updated.status();
      if (updated->affected() == 1) {
        s.version = next.version;
        return absl::OkStatus();
      }
      auto exists = conn.Exec("SELECT 1 FROM schedules WHERE tenant = $1 AND id = $2",
                              {PgParam::Text(s.schedule.tenant()), PgParam::Text(s.schedule.id())});
      if (!exists.ok()) return exists.status();
      if (exists->rows() == 0) return NotFound(s.schedule.id());
      return absl::AbortedError(
          absl::StrCat("schedule \"", s.schedule.id(), "\" changed meanwhile"));
    });
  }

  absl::Status Delete(const std::string& tenant, const std::string& id) override {
    return pool_->Use([&](PgConnection& conn) -> absl::Status {
      auto deleted = conn.Exec("DELETE FROM schedules WHERE tenant = $1 AND id = $2",
                               {PgParam::Text(tenant), PgParam::Text(id)});
      if (!deleted.ok()) return deleted.status();
      return deleted->affected() == 0 ? NotFound(id) : absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<StoredSchedule>> Due(absl::Time now, int limit) const override {
    std::vector<StoredSchedule> found;
    absl::Status s = Select(
        "SELECT record FROM schedules WHERE wake_ms > 0 AND wake_ms <= $1 "
        "ORDER BY wake_ms LIMIT $2",
        {PgParam::Int(absl::ToUnixMillis(now)), PgParam::Int(limit)}, &found);
    if (!s.ok()) return s;
    return found;
  }

 private:
  absl::Status Select(const char* sql, std::vector<PgParam> params,
                      std::vector<StoredSchedule>* out) const {
    return pool_->Use([&](PgConnection& conn) -> absl::Status {
      auto rows = conn.Exec(sql, params, /*binary_results=*/true);
      if (!rows.ok()) return rows.status();
      auto decoded = Decode(*rows);
      if (!decoded.ok()) return decoded.status();
      *out = *std::move(decoded);
      return absl::OkStatus();
    });
  }

  storage::pg::PgPool* const pool_;
};

}  // namespace

std::unique_ptr<ScheduleStore> NewPgScheduleStore(storage::pg::PgPool* pool) {
  return std::make_unique<PgScheduleStore>(pool);
}

}  // namespace jobstream::schedules
