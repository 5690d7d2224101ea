// JobStatsHistory: the last hour of job counts, sampled on a thread of its own, for
// GetJobStats (the console's charts: no Prometheus needed to see a queue grow).
#pragma once

#include <deque>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/job_backend.h"

namespace jobstream::server_metrics {

class JobStatsHistory {
 public:
  // Samples every `interval` (the first at once): this server's totals (JobTotals) and
  // the store's queued and running jobs (ListTypes). `jobs` must outlive this.
  JobStatsHistory(const jobs::JobBackend* jobs, absl::Duration interval);
  ~JobStatsHistory();  // stops sampling

  v1::JobStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Sample() ABSL_LOCKS_EXCLUDED(mu_);

  const jobs::JobBackend* const jobs_;
  const absl::Duration interval_;
  const size_t kept_;  // an hour's
  mutable absl::Mutex mu_;
  std::deque<v1::JobStatsSample> samples_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace jobstream::server_metrics
