#include "server/metrics/server_metrics.h"

#include <algorithm>
#include <atomic>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::server_metrics {
namespace {

using v1::Job;
using v1::JobEvent;

constexpr char kSubmitted[] = "jobstream_jobs_submitted_total";
constexpr char kStarted[] = "jobstream_jobs_started_total";
constexpr char kSucceeded[] = "jobstream_jobs_succeeded_total";
constexpr char kFailed[] = "jobstream_jobs_failed_total";
constexpr char kRetried[] = "jobstream_jobs_retried_total";
constexpr char kRerun[] = "jobstream_jobs_rerun_total";
constexpr char kCancelled[] = "jobstream_jobs_cancelled_total";
constexpr char kLeasesExpired[] = "jobstream_leases_expired_total";
constexpr char kQueueWait[] = "jobstream_job_queue_wait_seconds";
constexpr char kRunTime[] = "jobstream_job_run_seconds";
constexpr char kCommitWrites[] = "jobstream_store_commit_writes";
constexpr char kCommitSeconds[] = "jobstream_store_commit_seconds";
constexpr char kFirstEvent[] = "jobstream_watch_first_event_seconds";
constexpr char kArtifactWritten[] = "jobstream_artifact_bytes_written_total";
constexpr char kArtifactRead[] = "jobstream_artifact_bytes_read_total";
constexpr char kWebhooks[] = "jobstream_webhook_attempts_total";
constexpr char kStoreUp[] = "jobstream_store_up";
constexpr char kStoreFailures[] = "jobstream_store_failures_total";
constexpr char kStoreRecoveries[] = "jobstream_store_recoveries_total";
constexpr char kPgPoolWait[] = "jobstream_pg_pool_wait_seconds";
constexpr char kPgCall[] = "jobstream_pg_call_seconds";
constexpr char kPgUnavailable[] = "jobstream_pg_unavailable_total";
constexpr char kPgRetries[] = "jobstream_pg_retries_total";
constexpr char kFeedLag[] = "jobstream_pg_feed_lag_seconds";
constexpr char kFeedLost[] = "jobstream_pg_feed_lost_total";
constexpr char kSpansExported[] = "jobstream_spans_exported_total";
constexpr char kSpansDropped[] = "jobstream_spans_dropped_total";

metrics::Registry* Make() {
  auto* r = new metrics::Registry();
  r->DeclareCounter(kSubmitted, "Jobs submitted (created), by type.", "type");
  r->DeclareCounter(kStarted, "Attempts started, by type.", "type");
  r->DeclareCounter(kSucceeded, "Jobs that succeeded, by type.", "type");
  r->DeclareCounter(kFailed, "Jobs that failed for good, by type.", "type");
  r->DeclareCounter(kRetried, "Attempts that ended in a retry (or a requeue at shutdown), by type.",
                    "type");
  r->DeclareCounter(kCancelled, "Jobs cancelled, by type.", "type");
  r->DeclareCounter(kRerun, "Ended jobs an operator ran again (RetryJob), by type.", "type");
  r->DeclareCounter(kLeasesExpired,
                    "Attempts ended because their worker's lease ran out, by type.", "type");
  r->DeclareHistogram(kQueueWait,
                      "Seconds a job waited from when it could run (queued, retried, released "
                      "by its dependencies, or its run_at) until an attempt started, by type.",
                      metrics::LatencyBuckets(), "type");
  r->DeclareHistogram(kRunTime, "Seconds an attempt ran, from its start to its end, by type.",
                      metrics::LatencyBuckets(), "type");
  r->DeclareHistogram(kCommitWrites, "Writes per group the embedded store committed with one fsync.",
                      {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
  r->DeclareHistogram(kCommitSeconds,
                      "Seconds the embedded store took to write and fsync a group of writes.",
                      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                       0.25, 0.5, 1, 2.5});
  r->DeclareHistogram(kFirstEvent,
                      "Seconds from a watch stream's start to its first event sent.",
                      metrics::LatencyBuckets());
  r->DeclareCounter(kArtifactWritten, "Artifact bytes committed (uploads and program outputs).");
  r->DeclareCounter(kArtifactRead, "Artifact bytes sent to readers (GetArtifact, downloads).");
  r->DeclareCounter(kWebhooks,
                    "Webhook delivery attempts this server made, by outcome: delivered, "
                    "failed_will_retry, gave_up.",
                    "outcome");
  for (const char* outcome : {"delivered", "failed_will_retry", "gave_up"}) {
    r->counter(kWebhooks, outcome);
  }
  r->DeclareGauge(kStoreUp, "1 while the store takes writes, 0 while it has failed (RocksDB).");
  r->gauge(kStoreUp)->Set(1);
  r->DeclareCounter(kStoreFailures, "Times the embedded store failed a write and stopped taking them.");
  r->DeclareCounter(kStoreRecoveries, "Times the embedded store took writes again after failing.");
  const std::vector<double> fast = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
  r->DeclareHistogram(kPgPoolWait,
                      "Seconds a call waited for a pooled PostgreSQL connection (0: one was free).",
                      fast);
  r->DeclareHistogram(kPgCall,
                      "Seconds a call held its PostgreSQL connection: a statement, or a "
                      "transaction's statements.",
                      fast);
  r->DeclareCounter(kPgUnavailable, "PostgreSQL connections lost, or not made.");
  r->DeclareCounter(kPgRetries, "PostgreSQL transactions run again after losing a race.");
  r->DeclareHistogram(kFeedLag,
                      "Seconds from an event's time to this server publishing it to its "
                      "watchers (PostgreSQL's event feed).",
                      fast);
  r->DeclareCounter(kFeedLost, "Times the PostgreSQL event feed lost its connection.");
  r->DeclareCounter(kSpansExported, "Spans the --otlp_endpoint collector took.");
  r->DeclareCounter(kSpansDropped,
                    "Spans dropped: the export queue was full, or the collector refused them.");
  return r;
}

// A type's series, looked up once: a state change costs a shared lock and a hash lookup.
struct TypeSeries {
  metrics::Counter* submitted;
  metrics::Counter* started;
  metrics::Counter* succeeded;
  metrics::Counter* failed;
  metrics::Counter* retried;
  metrics::Counter* cancelled;
  metrics::Counter* rerun;
  metrics::Counter* leases_expired;
  metrics::Histogram* queue_wait;
  metrics::Histogram* run_time;
};

class TypeCache {
 public:
  TypeSeries Of(const std::string& type) {
    {
      absl::ReaderMutexLock lock(&mu_);
      if (auto it = series_.find(type); it != series_.end()) return it->second;
    }
    metrics::Registry& r = Registry();
    TypeSeries s{r.counter(kSubmitted, type), r.counter(kStarted, type),
                 r.counter(kSucceeded, type), r.counter(kFailed, type),
                 r.counter(kRetried, type),   r.counter(kCancelled, type),
                 r.counter(kRerun, type),     r.counter(kLeasesExpired, type), r.histogram(kQueueWait, type),
                 r.histogram(kRunTime, type)};
    absl::MutexLock lock(&mu_);
    // Bounded: past 1,000 types (the registry's families count them under "_other"),
    // more are looked up in the registry each time.
    if (series_.size() < 1000) series_.try_emplace(type, s);
    return s;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, TypeSeries> series_ ABSL_GUARDED_BY(mu_);
};

std::atomic<bool> tenant_counts{false};
constexpr char kTenantSubmitted[] = "jobstream_tenant_jobs_submitted_total";
constexpr char kTenantSucceeded[] = "jobstream_tenant_jobs_succeeded_total";
constexpr char kTenantFailed[] = "jobstream_tenant_jobs_failed_total";
constexpr char kTenantCancelled[] = "jobstream_tenant_jobs_cancelled_total";

TypeSeries Series(const std::string& type) {
  static TypeCache* const cache = new TypeCache();  // never destroyed: used until exit
  return cache->Of(type);
}

}  // namespace

metrics::Registry& Registry() {
  static metrics::Registry* registry = Make();
  return *registry;
}

void DeclareTypes(const std::vector<std::string>& types) {
  for (const std::string& type : types) Series(type);
}

void EnableTenantCounts() {
  metrics::Registry& r = Registry();
  r.DeclareCounter(kTenantSubmitted, "Jobs submitted, by tenant (--metrics_tenants).", "tenant");
  r.DeclareCounter(kTenantSucceeded, "Jobs that succeeded, by tenant.", "tenant");
  r.DeclareCounter(kTenantFailed, "Jobs that failed for good, by tenant.", "tenant");
  r.DeclareCounter(kTenantCancelled, "Jobs cancelled, by tenant.", "tenant");
  tenant_counts = true;
}

namespace {
std::atomic<int64_t> total_submitted{0}, total_succeeded{0}, total_failed{0},
    total_cancelled{0};
}  // namespace

Totals JobTotals() {
  return {total_submitted.load(std::memory_order_relaxed),
          total_succeeded.load(std::memory_order_relaxed),
          total_failed.load(std::memory_order_relaxed),
          total_cancelled.load(std::memory_order_relaxed)};
}

void CountStateChange(const JobEvent& event) {
  if (tenant_counts.load(std::memory_order_relaxed) && !event.status().tenant().empty()) {
    const char* family = event.type() == JobEvent::CREATED     ? kTenantSubmitted
                         : event.type() == JobEvent::SUCCEEDED ? kTenantSucceeded
                         : event.type() == JobEvent::FAILED    ? kTenantFailed
                         : event.type() == JobEvent::CANCELLED ? kTenantCancelled
                                                               : nullptr;
    if (family != nullptr) Registry().counter(family, event.status().tenant())->Add();
  }
  metrics::Counter* counter = nullptr;
  const TypeSeries s = Series(event.status().type());
  switch (event.type()) {
    case JobEvent::CREATED:
      counter = s.submitted;
      total_submitted.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobEvent::STARTED: counter = s.started; break;
    case JobEvent::SUCCEEDED:
      counter = s.succeeded;
      total_succeeded.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobEvent::FAILED:
      counter = s.failed;
      total_failed.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobEvent::RETRYING: counter = s.retried; break;
    case JobEvent::CANCELLED:
      counter = s.cancelled;
      total_cancelled.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobEvent::RETRIED: counter = s.rerun; break;
    default: return;
  }
  counter->Add();
}

void CountLeaseExpired(const std::string& type) { Series(type).leases_expired->Add(); }

void ObserveQueueWait(const std::string& type, absl::Duration wait) {
  Series(type).queue_wait->Observe(absl::ToDoubleSeconds(std::max(wait, absl::ZeroDuration())));
}

void ObserveRunTime(const std::string& type, absl::Duration run) {
  Series(type).run_time->Observe(absl::ToDoubleSeconds(std::max(run, absl::ZeroDuration())));
}

absl::Time ReadySince(const Job& job) {
  absl::Time ready = v1::ToTime(job.update_time());
  if (job.attempt() == 0 && job.has_run_at()) ready = std::max(ready, v1::ToTime(job.run_at()));
  if (job.has_next_attempt_time()) ready = std::max(ready, v1::ToTime(job.next_attempt_time()));
  return ready;
}

void CountArtifactBytes(bool written, int64_t bytes) {
  static metrics::Counter* const w = Registry().counter(kArtifactWritten);
  static metrics::Counter* const r = Registry().counter(kArtifactRead);
  (written ? w : r)->Add(bytes);
}

void CountWebhookAttempt(const char* outcome) { Registry().counter(kWebhooks, outcome)->Add(); }

void ObserveCommit(size_t writes, absl::Duration took) {
  static metrics::Histogram* const sizes = Registry().histogram(kCommitWrites);
  static metrics::Histogram* const seconds = Registry().histogram(kCommitSeconds);
  sizes->Observe(static_cast<double>(writes));
  seconds->Observe(absl::ToDoubleSeconds(took));
}

void ObserveFirstEvent(absl::Duration after) {
  static metrics::Histogram* const first = Registry().histogram(kFirstEvent);
  first->Observe(absl::ToDoubleSeconds(after));
}

// Unlabelled series are looked up once (the registry's lookup takes its lock).
void StoreFailed() {
  static metrics::Gauge* const up = Registry().gauge(kStoreUp);
  static metrics::Counter* const failures = Registry().counter(kStoreFailures);
  up->Set(0);
  failures->Add();
}

void StoreRecovered() {
  static metrics::Gauge* const up = Registry().gauge(kStoreUp);
  static metrics::Counter* const recoveries = Registry().counter(kStoreRecoveries);
  up->Set(1);
  recoveries->Add();
}

void ObservePgPoolWait(absl::Duration wait) {
  static metrics::Histogram* const h = Registry().histogram(kPgPoolWait);
  h->Observe(absl::ToDoubleSeconds(wait));
}

void ObservePgCall(absl::Duration held) {
  static metrics::Histogram* const h = Registry().histogram(kPgCall);
  h->Observe(absl::ToDoubleSeconds(held));
}

void CountPgUnavailable() {
  static metrics::Counter* const c = Registry().counter(kPgUnavailable);
  c->Add();
}

void CountPgRetry() {
  static metrics::Counter* const c = Registry().counter(kPgRetries);
  c->Add();
}

void ObserveFeedLag(absl::Duration lag) {
  static metrics::Histogram* const h = Registry().histogram(kFeedLag);
  h->Observe(absl::ToDoubleSeconds(std::max(lag, absl::ZeroDuration())));
}

void CountFeedLost() {
  static metrics::Counter* const c = Registry().counter(kFeedLost);
  c->Add();
}

void CountSpansExported(int64_t n) {
  static metrics::Counter* const c = Registry().counter(kSpansExported);
  c->Add(n);
}

void CountSpansDropped(int64_t n) {  // once per span while the queue is full: kept cheap
  static metrics::Counter* const c = Registry().counter(kSpansDropped);
  c->Add(n);
}

}  // namespace jobstream::server_metrics
