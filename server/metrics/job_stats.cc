#include "server/metrics/job_stats.h"

#include <pthread.h>

#include <algorithm>

#include "jobstream/v1/job_states.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::server_metrics {

JobStatsHistory::JobStatsHistory(const jobs::JobBackend* jobs, absl::Duration interval)
    : jobs_(jobs),
      interval_(interval),
      kept_(static_cast<size_t>(std::max<int64_t>(1, absl::Hours(1) / interval))) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-stats");
    do {
      Sample();
    } while (!stop_.WaitForNotificationWithTimeout(interval_));
  });
}

JobStatsHistory::~JobStatsHistory() {
  stop_.Notify();
  thread_.join();
}

void JobStatsHistory::Sample() {
  v1::JobStatsSample sample;
  *sample.mutable_time() = v1::ToProto(absl::Now());
  const Totals totals = JobTotals();
  sample.set_submitted(totals.submitted);
  sample.set_succeeded(totals.succeeded);
  sample.set_failed(totals.failed);
  sample.set_cancelled(totals.cancelled);
  // A store that cannot answer now leaves the depth at 0 for this sample.
  const v1::ListJobTypesResponse types = jobs_->ListTypes(auth::Scope::Everything());
  for (const v1::JobTypeInfo& type : types.types()) {
    sample.set_queued(sample.queued() + type.queued());
    sample.set_running(sample.running() + type.running());
  }
  absl::MutexLock lock(&mu_);
  samples_.push_back(std::move(sample));
  while (samples_.size() > kept_) samples_.pop_front();
}

v1::JobStats JobStatsHistory::Stats() const {
  v1::JobStats stats;
  *stats.mutable_interval() = v1::ToProto(interval_);
  absl::MutexLock lock(&mu_);
  for (const v1::JobStatsSample& s : samples_) *stats.add_samples() = s;
  return stats;
}

}  // namespace jobstream::server_metrics
