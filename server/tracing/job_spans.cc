#include "server/tracing/job_spans.h"

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "jobstream/v1/job_states.h"
#include "server/tracing/otlp_wire.h"
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
SpanWriter Of(const Job& job, std::string_view span_id, std::string_view parent_span_id,
              std::string_view name, absl::Time start, absl::Time end) {
  // Ids the server made or checked (lower-case hex); zeros, which a collector refuses, if
  // a stored one were not.
  TraceIdBytes trace{};
  SpanIdBytes span{}, parent{};
  IdBytes(job.trace().trace_id(), trace);
  IdBytes(span_id, span);
  const bool has_parent = IdBytes(parent_span_id, parent);
  SpanWriter writer(trace, span, has_parent ? &parent : nullptr, name, start, end);
  writer.Attribute("jobstream.job.id", job.id());
  writer.Attribute("jobstream.job.type", job.type());
  if (!job.tenant().empty()) writer.Attribute("jobstream.tenant", job.tenant());
  return writer;
}

// A child span of the job's own.
SpanWriter Child(const Job& job, std::string_view span_id, std::string_view name,
                 absl::Time start, absl::Time end) {
  return Of(job, span_id, job.trace().span_id(), name, start, end);
}

std::string Outcome(JobEvent::Type type) {
  return absl::AsciiStrToLower(JobEvent::Type_Name(type));
}

}  // namespace

void EndWaitSpan(const Job& job, absl::Time ready, absl::Time now) {
  if (!Wanted(job)) return;
  const int attempt = job.attempt() + 1;
  SpanWriter span = Child(job, WaitSpanId(job.trace(), AttemptKey(job, attempt)),
                          "queue wait", std::min(ready, now), now);
  span.Attribute("jobstream.attempt", int64_t{attempt});
  Export(std::move(span).Finish());
}

void EndAttemptSpan(const Job& job, int attempt, JobEvent::Type outcome, absl::Time now) {
  if (!Wanted(job) || !job.has_start_time()) return;
  SpanWriter span = Child(job, AttemptSpanId(job.trace(), AttemptKey(job, attempt)),
                          absl::StrCat("attempt ", attempt), v1::ToTime(job.start_time()), now);
  span.Attribute("jobstream.attempt", int64_t{attempt});
  span.Attribute("jobstream.outcome", Outcome(outcome));
  if (!job.worker_id().empty()) span.Attribute("jobstream.worker", job.worker_id());
  if (outcome != JobEvent::SUCCEEDED) span.Error(job.error().message());
  Export(std::move(span).Finish());
}

void EndJobSpan(const Job& job, JobEvent::Type outcome) {
  if (!Wanted(job)) return;
  SpanWriter span = Of(job, job.trace().span_id(), job.trace().parent_span_id(),
                       absl::StrCat("job ", job.type()), v1::ToTime(job.create_time()),
                       job.has_end_time() ? v1::ToTime(job.end_time()) : absl::Now());
  span.Attribute("jobstream.attempts", int64_t{job.attempt()});
  span.Attribute("jobstream.outcome", Outcome(outcome));
  if (outcome != JobEvent::SUCCEEDED) span.Error(job.error().message());
  Export(std::move(span).Finish());
}

}  // namespace jobstream::tracing
