// JobWaits: the WaitJob calls a manager holds, found by job (to answer them when it
// finishes) and by deadline (to answer them when their time is up). Each wait is taken out
// exactly once, by whichever comes first — the finish, the deadline, the caller leaving or
// the server stopping. Not thread-safe: the manager's lock guards it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/time/time.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/leases.h"

namespace jobstream::jobs {

class JobWaits {
 public:
  using Waits = std::vector<std::shared_ptr<JobWait>>;

  // A new wait for `job_id`, answered through `done`, due at `deadline` (rounded up to
  // the millisecond: never answered before its time).
  std::shared_ptr<JobWait> Add(const std::string& job_id,
                               std::function<void(absl::StatusOr<v1::Job>)> done,
                               absl::Time deadline);
  // The wait, if it is still held; null if it was answered already.
  std::shared_ptr<JobWait> Take(const std::string& key);
  // Every wait of the job; of those whose deadline is at or before now_ms; of all.
  Waits TakeJob(const std::string& job_id);
  Waits TakeDue(int64_t now_ms);
  Waits TakeAll();
  std::optional<int64_t> NextDue() const { return deadlines_.Next(); }

 private:
  // Keyed job id '/' be64 counter: a job's waits are one range.
  absl::btree_map<std::string, std::shared_ptr<JobWait>> by_key_;
  DeadlineIndex deadlines_;  // by key
  uint64_t counter_ = 0;
};

}  // namespace jobstream::jobs
