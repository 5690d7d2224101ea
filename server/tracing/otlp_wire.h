// OTLP's trace messages written straight to their protobuf bytes. A span is encoded once,
// on the thread that ended it, into one string; the exporter sends a batch as those
// strings joined under a request's few headers. Building the generated messages instead
// (a dozen small allocations a span, then serializing and freeing them) was most of what
// tracing cost a job (bench/RESULTS.md). The bytes are what the generated
// opentelemetry.proto classes parse (tests/tracing/otlp_wire_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "server/tracing/ids.h"

namespace jobstream::tracing {

// One opentelemetry.proto.trace.v1.Span (kind INTERNAL), field by field.
class SpanWriter {
 public:
  // `parent` null: a root span.
  SpanWriter(const TraceIdBytes& trace, const SpanIdBytes& span, const SpanIdBytes* parent,
             std::string_view name, absl::Time start, absl::Time end);
  void Attribute(std::string_view key, std::string_view text);
  void Attribute(std::string_view key, int64_t number);
  void Error(std::string_view message);  // status ERROR with its message
  std::string Finish() && { return std::move(bytes_); }

 private:
  std::string bytes_;
};

// An ExportTraceServiceRequest of one resource (service.name "jobstream" and, if given,
// service.instance.id) and one scope holding `spans`, each SpanWriter's bytes.
std::string ExportRequest(std::string_view service_instance,
                          const std::vector<std::string>& spans);

}  // namespace jobstream::tracing
