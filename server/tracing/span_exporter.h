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

#include "absl/time/time.h"

namespace jobstream::tracing {

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
// Queues a span, as SpanWriter encoded it; dropped (and counted) if the queue is full or
// export is off.
void Export(std::string span);

}  // namespace jobstream::tracing
