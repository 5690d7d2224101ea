// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` a caller
// sends, and the span ids of a job's trace. A job is a span of its caller's trace (or of a
// trace of its own); each attempt, and the wait before it, a child span of the job. Their
// ids are derived from the job's span id and the attempt's number, so nothing more is
// stored per attempt and every server derives the same ones.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::tracing {

struct SpanContext {
  std::string trace_id;  // 32 lower-case hex digits, not all zero
  std::string span_id;   // 16 lower-case hex digits, not all zero
  bool sampled = true;
};

// A traceparent header's value ("00-<trace id>-<parent id>-<flags>"), or nullopt if it
// is not one: W3C says a receiver then ignores it and starts a trace of its own. Versions
// above 00 are read as 00 (the spec's forward compatibility).
std::optional<SpanContext> ParseTraceparent(absl::string_view header);
std::string FormatTraceparent(const SpanContext& context);

// A new job's trace: a child span of `parent` (the caller's), or a new trace's root. A
// child is sampled as its parent is; a root, with the probability SetRootSampleRatio set
// (1 unless set), decided by its trace id's low 56 bits as W3C's random trace ids allow,
// so every server decides alike. A job not sampled exports no spans; its programs and
// workers get its traceparent with the sampled flag off.
v1::TraceContext NewJobTrace(const std::optional<SpanContext>& parent);
void SetRootSampleRatio(double ratio);  // --otlp_sample_ratio, 0..1
bool SampledRoot(absl::string_view trace_id);

// The spans under a job: attempt `n`, and the wait in the queue before it.
std::string AttemptSpanId(const v1::TraceContext& job, int attempt);
std::string WaitSpanId(const v1::TraceContext& job, int attempt);
// What an attempt's program or worker is handed as TRACEPARENT: the attempt's span.
std::string AttemptTraceparent(const v1::TraceContext& job, int attempt);
// What the spans of `job`'s attempt `attempt` derive from: its place among all the job's
// series (RetryJob starts a new one), so a retried job's attempts get spans of their own.
inline int AttemptKey(const v1::Job& job, int attempt) {
  return (std::max(job.series(), 1) - 1) * 1000 + attempt;
}

}  // namespace jobstream::tracing
