// The spans of a job's trace, made where its state changes (transitions.cc) and sent by
// the span exporter when --otlp_endpoint is set; nothing is made otherwise.
//   job <type>       created -> finished; a child of the submitter's span, if it sent one
//     queue wait     ready to run -> attempt n starts (one per attempt)
//     attempt <n>    attempt n starts -> ends, with its outcome and worker
#pragma once

#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::tracing {

// Before attempt job.attempt() + 1 starts at `now`; it could run from `ready`.
void EndWaitSpan(const v1::Job& job, absl::Time ready, absl::Time now);
// Attempt `attempt` ended at `now` as `outcome` (the job as the end left it).
void EndAttemptSpan(const v1::Job& job, int attempt, v1::JobEvent::Type outcome, absl::Time now);
// The job finished (SUCCEEDED, FAILED or CANCELLED).
void EndJobSpan(const v1::Job& job, v1::JobEvent::Type outcome);

}  // namespace jobstream::tracing
