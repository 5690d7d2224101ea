#include "server/metrics/store_gauges.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "jobstream/v1/job_states.h"
#include "server/auth/scope.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::server_metrics {

void DeclareServerGauges(const jobs::JobBackend* jobs, const watch::EventHub* hub) {
  // One ListTypes per scrape serves the five families: it is kept for a second.
  struct Snapshot {
    absl::Mutex mu;
    absl::Time taken ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    v1::ListJobTypesResponse types ABSL_GUARDED_BY(mu);
  };
  auto snapshot = std::make_shared<Snapshot>();
  using Values = std::vector<std::pair<std::string, double>>;
  auto by_type = [jobs, snapshot](double (*value)(const v1::JobTypeInfo&), bool external_only) {
    return [jobs, snapshot, value, external_only]() -> Values {
      absl::MutexLock lock(&snapshot->mu);
      const absl::Time now = absl::Now();
      if (now - snapshot->taken > absl::Seconds(1)) {
        snapshot->types = jobs->ListTypes(auth::Scope::Everything());
        snapshot->taken = now;
      }
      Values values;
      for (const v1::JobTypeInfo& t : snapshot->types.types()) {
        if (external_only && t.runner() != v1::JobTypeInfo::EXTERNAL) continue;
        values.emplace_back(t.name(), value(t));
      }
      return values;
    };
  };
  metrics::Registry& r = Registry();
  r.DeclareGaugeFunc("jobstream_jobs_queued",
                     "Jobs queued now (ready, scheduled or waiting to retry), by type.", "type",
                     by_type([](const v1::JobTypeInfo& t) { return double(t.queued()); }, false));
  r.DeclareGaugeFunc("jobstream_jobs_running", "Jobs running now, by type.", "type",
                     by_type([](const v1::JobTypeInfo& t) { return double(t.running()); }, false));
  r.DeclareGaugeFunc(
      "jobstream_queue_latency_seconds",
      "How long the ready job that has waited longest has waited (0: none ready), by type.",
      "type", by_type([](const v1::JobTypeInfo& t) {
        return absl::ToDoubleSeconds(v1::ToDuration(t.queue_latency()));
      }, false));
  r.DeclareGaugeFunc("jobstream_workers_polling",
                     "LeaseJob calls waiting for a job now, by (external) type.", "type",
                     by_type([](const v1::JobTypeInfo& t) { return double(t.polling()); }, true));
  r.DeclareGaugeFunc("jobstream_workers_seen",
                     "Distinct worker ids that asked for jobs in the last minute, by type.",
                     "type",
                     by_type([](const v1::JobTypeInfo& t) { return double(t.workers()); }, true));
  r.DeclareGaugeFunc("jobstream_watch_streams_open",
                     "Watch streams (WatchJob, WatchJobs) open on this server.", "",
                     [hub]() -> Values { return {{"", double(hub->watchers())}}; });
}

}  // namespace jobstream::server_metrics
