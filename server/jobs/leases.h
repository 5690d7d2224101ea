// What the JobManager keeps about work handed out: lease ids (fencing tokens), deadline
// indexes (lease expiry, attempt timeouts) and the workers waiting in LeaseJob.
// Not thread-safe: the JobManager guards all of it with its lock.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "jobstream/v1/workers.pb.h"
#include "server/auth/scope.h"

namespace jobstream::jobs {

// "<job id>-<16 characters of base32 randomness>": the job is found from the lease id, and
// no later lease on the same job ever equals an earlier one.
std::string NewLeaseId(absl::string_view job_id);
// The job id inside a lease id; INVALID_ARGUMENT for anything that is not a lease id.
absl::StatusOr<std::string> LeaseJobId(absl::string_view lease_id);

// Job ids by a deadline (Unix ms); at most one deadline per job.
class DeadlineIndex {
 public:
  void Set(const std::string& job_id, int64_t deadline_ms);
  void Clear(const std::string& job_id);
  // Removes and returns the jobs whose deadline is at or before now_ms.
  std::vector<std::string> TakeDue(int64_t now_ms);
  std::optional<int64_t> Next() const;

 private:
  std::set<std::pair<int64_t, std::string>> by_time_;
  absl::flat_hash_map<std::string, int64_t> by_job_;
};

using LeaseCallback = std::function<void(absl::StatusOr<v1::LeaseJobResponse>)>;

// One LeaseJob call waiting for jobs.
struct LeaseWaiter {
  std::vector<std::string> types;
  std::optional<std::string> tenant;  // only this tenant's jobs
  std::string worker_id;
  int max_jobs = 1;
  absl::Duration lease_duration = absl::ZeroDuration();  // zero: the type's
  absl::Time deadline;
  LeaseCallback done;
};
using WaiterList = std::list<std::shared_ptr<LeaseWaiter>>;

// Who polls for which type: the waiting calls, and when each worker last asked.
class WorkerRegistry {
 public:
  WaiterList& waiters() { return waiters_; }
  const WaiterList& waiters() const { return waiters_; }
  void Seen(const std::vector<std::string>& types, const std::string& worker_id, absl::Time now);
  // Waiting calls for `type`, and distinct workers that asked for it since `since`.
  int Polling(absl::string_view type) const;
  int Workers(absl::string_view type, absl::Time since) const;
  // Forgets workers not seen since `since`.
  void Prune(absl::Time since);

 private:
  WaiterList waiters_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, absl::Time>> seen_;
};

}  // namespace jobstream::jobs
