// ScheduleStore: where schedules are kept — the RocksDB data dir or PostgreSQL. Reads and
// writes only; what a schedule does is decided in planner.h and schedule_manager.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "jobstream/v1/schedules.pb.h"
#include "server/auth/scope.h"
#include "server/schedules/planner.h"

namespace jobstream::storage {
class JobStore;
namespace pg {
class PgPool;
}
}  // namespace jobstream::storage

namespace jobstream::schedules {

struct StoredSchedule {
  // As the API shows it, less what is computed on read.
  v1::Schedule schedule;
  FireState state;
  // When the scheduler next looks at it; nullopt: never (paused, or no fire will come).
  std::optional<absl::Time> wake;
  // Set by the store on each read and write; Update compares it.
  int64_t version = 0;
};

class ScheduleStore {
 public:
  virtual ~ScheduleStore() = default;
  // ALREADY_EXISTS if the tenant has a schedule of that id. Sets s.version.
  virtual absl::Status Create(StoredSchedule& s) = 0;
  // NOT_FOUND if there is none.
  virtual absl::StatusOr<StoredSchedule> Get(const std::string& tenant,
                                             const std::string& id) const = 0;
  // Ordered by tenant, then id; those after (after_tenant, after_id), at most `limit`.
  virtual absl::StatusOr<std::vector<StoredSchedule>> List(const auth::Scope& scope,
                                                           const std::string& after_tenant,
                                                           const std::string& after_id,
                                                           int limit) const = 0;
  // Writes s if it is still at s.version (then bumps it): ABORTED if another write came
  // first, NOT_FOUND if it was deleted.
  virtual absl::Status Update(StoredSchedule& s) = 0;
  // NOT_FOUND if there is none.
  virtual absl::Status Delete(const std::string& tenant, const std::string& id) = 0;
  // Schedules whose wake time is at or before `now`, soonest first, at most `limit`.
  virtual absl::StatusOr<std::vector<StoredSchedule>> Due(absl::Time now, int limit) const = 0;
};

// In the RocksDB store's schedules and schedule_due column families.
std::unique_ptr<ScheduleStore> NewRocksScheduleStore(storage::JobStore* store);
// In PostgreSQL's schedules table.
std::unique_ptr<ScheduleStore> NewPgScheduleStore(storage::pg::PgPool* pool);

}  // namespace jobstream::schedules
