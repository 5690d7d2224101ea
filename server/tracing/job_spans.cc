#include "server/tracing/job_spans.h"

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "jobstream/v1/job_states.h"
#include "server/tracing/span_exporter.h"
#include "server/tracing/trace_context.h"

namespace jobstream::tracing {
namespace {

using v1::Job;
using v1::JobEvent;

bool Wanted(const Job& job) {
  return Exporting() && !job.trace().trace_id().empty() && job.trace().sampled();
}

// A span of the job's trace, with the attributes every one of them carries.
Span Of(const Job& job, std::string span_id, std::string parent_span_id, std::string name,
        absl::Time start, absl::Time end) {
  Span span;
  span.trace_id = job.trace().trace_id();
  span.span_id = std::move(span_id);
  span.parent_span_id = std::move(parent_span_id);
  span.name = std::move(name);
  span.start = start;
  span.end = end;
  span.attributes.push_back({"jobstream.job.id", job.id()});
  span.attributes.push_back({"jobstream.job.type", job.type()});
  if (!job.tenant().empty()) span.attributes.push_back({"jobstream.tenant", job.tenant()});
  return span;
}

// A child span of the job's own.
Span Child(const Job& job, std::string span_id, std::string name, absl::Time start,
           absl::Time end) {
  return Of(job, std::move(span_id), job.trace().span_id(), std::move(name), start, end);
}

std::string Outcome(JobEvent::Type type) {
  return absl::AsciiStrToLower(JobEvent::Type_Name(type));
}

}  // namespace

void EndWaitSpan(const Job& job, absl::Time ready, absl::Time now) {
  if (!Wanted(job)) return;
  const int attempt = job.attempt() + 1;
  Span span = Child(job, WaitSpanId(job.trace(), AttemptKey(job, attempt)), "queue wait",
                    std::min(ready, now), now);
  span.attributes.push_back({"jobstream.attempt", int64_t{attempt}});
  Export(std::move(span));
}

void EndAttemptSpan(const Job& job, int attempt, JobEvent::Type outcome, absl::Time now) {
  if (!Wanted(job) || !job.has_start_time()) return;
  Span span = Child(job, AttemptSpanId(job.trace(), AttemptKey(job, attempt)),
                    absl::StrCat("attempt ", attempt), v1::ToTime(job.start_time()), now);
  span.attributes.push_back({"jobstream.attempt", int64_t{attempt}});
  span.attributes.push_back({"jobstream.outcome", Outcome(outcome)});
  if (!job.worker_id().empty()) span.attributes.push_back({"jobstream.worker", job.worker_id()});
  if (outcome != JobEvent::SUCCEEDED) {
    span.error = true;
    span.error_message = job.error().message();
  }
  Export(std::move(span));
}

void EndJobSpan(const Job& job, JobEvent::Type outcome) {
  if (!Wanted(job)) return;
  Span span = Of(job, job.trace().span_id(), job.trace().parent_span_id(),
                 absl::StrCat("job ", job.type()), v1::ToTime(job.create_time()),
                 job.has_end_time() ? v1::ToTime(job.end_time()) : absl::Now());
  span.attributes.push_back({"jobstream.attempts", int64_t{job.attempt()}});
  span.attributes.push_back({"jobstream.outcome", Outcome(outcome)});
  if (outcome != JobEvent::SUCCEEDED) {
    span.error = true;
    span.error_message = job.error().message();
  }
  Export(std::move(span));
}

}  // namespace jobstream::tracing
