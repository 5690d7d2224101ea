// The server's metrics: every family is declared here, in one process-wide registry that
// /metrics renders (metrics_http.h). Process-wide because what records them — the job
// transitions, the group committer, the watch streams — is shared by both stores and has
// no server object at hand, as with logs::.
//
// Job counts are made by the server that wrote the change (where its log line is written),
// so with several servers on one PostgreSQL each change is counted once, by one of them:
// sum across servers. Gauges of the queue are read from the store at each scrape, so every
// server reports the whole store's.
//
// Labels are bounded: by type (the config's types), by outcome or by method — never by job
// id or tenant. Declared types are named up front, so their series exist (at 0) from the
// first scrape, which makes rate() and absent-series alerts work.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/metrics.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::server_metrics {

// The registry, its families declared on first use.
metrics::Registry& Registry();

// Makes the job families' series of each type, at 0.
void DeclareTypes(const std::vector<std::string>& types);

// Counts state changes by tenant as well (--metrics_tenants): tenants come from the token
// file, so they are as many as its tenants. Call before the first change.
void EnableTenantCounts();

// A change this server wrote: counts it by the job's type (CREATED, STARTED and the ends;
// STEP, PROGRESS and the rest are not counted).
void CountStateChange(const v1::JobEvent& event);
// This server's counts since it started, over every type: what GetJobStats samples.
struct Totals {
  int64_t submitted = 0, succeeded = 0, failed = 0, cancelled = 0;
};
Totals JobTotals();
// An attempt ended by its lease running out (a worker went silent).
void CountLeaseExpired(const std::string& type);
// How long a job that starts now waited since it could run, and how long an attempt ran.
void ObserveQueueWait(const std::string& type, absl::Duration wait);
void ObserveRunTime(const std::string& type, absl::Duration run);
// When `job` (QUEUED, about to start) could first run: the later of its last change (made
// queued, retried, released by its dependencies), its run_at and its retry's backoff.
absl::Time ReadySince(const v1::Job& job);

// Artifact bytes committed (written) or sent to a reader.
void CountArtifactBytes(bool written, int64_t bytes);
// A webhook delivery attempt's outcome: "delivered", "failed_will_retry" or "gave_up".
void CountWebhookAttempt(const char* outcome);

// A group of writes the embedded store committed with one fsync: how many, how long.
void ObserveCommit(size_t writes, absl::Duration took);
// A watch stream's first event, `after` it was opened.
void ObserveFirstEvent(absl::Duration after);
// Store failures: the embedded store stopped taking writes, and took them again.
void StoreFailed();
void StoreRecovered();

// PostgreSQL: how long a call waited for a pooled connection (0 if one was free) and then
// held it; a connection lost or not made; a transaction run again after losing a race; an
// event another server wrote, `lag` after its time, published to this server's watchers;
// the event feed's connection lost.
void ObservePgPoolWait(absl::Duration wait);
void ObservePgCall(absl::Duration held);
void CountPgUnavailable();
void CountPgRetry();
void ObserveFeedLag(absl::Duration lag);
void CountFeedLost();

// Spans sent to --otlp_endpoint, and spans dropped (a full queue, or refused).
void CountSpansExported(int64_t n);
void CountSpansDropped(int64_t n);

}  // namespace jobstream::server_metrics
