// The server's gauges read from the store at each scrape (see server_metrics.h).
#pragma once

#include "server/jobs/job_backend.h"
#include "server/watch/event_hub.h"

namespace jobstream::server_metrics {

// The gauges read at each scrape, from the store (every server's jobs): by type, jobs
// queued and running, the queue's latency, LeaseJob calls waiting and workers seen in the
// last minute (ListJobTypes' figures); and this server's watch streams open. Call once;
// `jobs` and `hub` must outlive every scrape.
void DeclareServerGauges(const jobs::JobBackend* jobs, const watch::EventHub* hub);

}  // namespace jobstream::server_metrics
