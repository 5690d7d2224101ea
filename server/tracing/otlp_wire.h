// OTLP's trace messages written straight to their protobuf bytes. A span is encoded once,
// on the thread that ended it, into one string; the exporter sends a batch as those
// strings joined under a request's few headers. Building the generated messages instead
// (a dozen small allocations a span, then serializing and freeing them) was most of what
// tracing cost a job (bench/RESULTS.md). The bytes are what the generated
// opentelemetry.proto classes parse (tests/tracing/otlp_wire_test.cc).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace jobstream::tracing {

using TraceIdBytes = std::array<char, 16>;
using SpanIdBytes = std::array<char, 8>;

// The bytes a W3C id's lower-case hex digits stand for (false, and `out` unchanged, if
// `hex` is not 2 * N such digits).
template <size_t N>
bool IdBytes(std::string_view hex, std::array<char, N>& out) {
  if (hex.size() != 2 * N) return false;
  auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  std::array<char, N> bytes;
  for (size_t i = 0; i < N; ++i) {
    const int high = nibble(hex[2 * i]), low = nibble(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    bytes[i] = static_cast<char>(high << 4 | low);
  }
  out = bytes;
  return true;
}

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
