// SpanExporter: a job's spans, sent to an OpenTelemetry collector over OTLP/gRPC
// (--otlp_endpoint). Spans are queued by whoever ends them and sent in batches by a thread
// of their own: a slow or absent collector never holds a job up. The queue is bounded;
// what does not fit, or a batch the collector refuses, is dropped and counted
// (jobstream_spans_dropped_total), never retried for long.
//
// Process-wide, as the metrics are: spans end where state changes are made, in code both
// stores share.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/time/time.h"

namespace jobstream::tracing {

struct Span {
  std::string trace_id;        // 32 hex digits
  std::string span_id;         // 16 hex digits
  std::string parent_span_id;  // 16 hex digits, or empty for a root
  std::string name;
  absl::Time start, end;
  std::vector<std::pair<std::string, std::variant<std::string, int64_t>>> attributes;
  bool error = false;
  std::string error_message;
};

struct ExporterOptions {
  std::string endpoint;          // HOST:PORT of an OTLP/gRPC receiver (plaintext)
  std::string service_instance;  // service.instance.id: this server
  size_t max_queue = 8192;
  size_t max_batch = 512;
  absl::Duration interval = absl::Seconds(1);  // a batch goes at least this often
  absl::Duration timeout = absl::Seconds(10);  // for each Export call
};

// Starts exporting (once, before the first span); Stop sends what is queued (within the
// timeout) and ends the thread: call it once nothing ends spans any more (the store is
// closed).
void StartExporter(const ExporterOptions& options);
void StopExporter();
// Whether spans are wanted: callers skip building them otherwise.
bool Exporting();
// Queues a span; dropped (and counted) if the queue is full or export is off.
void Export(Span span);

}  // namespace jobstream::tracing
