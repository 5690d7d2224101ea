#include "server/tracing/otlp_wire.h"

#include <cstring>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace jobstream::tracing {
namespace {

using google::protobuf::io::CodedOutputStream;
using google::protobuf::internal::WireFormatLite;

// Field numbers, from proto/opentelemetry/proto/.
namespace request_field { constexpr int kResourceSpans = 1; }
namespace resource_spans_field { constexpr int kResource = 1, kScopeSpans = 2; }
namespace resource_field { constexpr int kAttributes = 1; }
namespace scope_spans_field { constexpr int kScope = 1, kSpans = 2; }
namespace scope_field { constexpr int kName = 1; }
namespace span_field {
constexpr int kTraceId = 1, kSpanId = 2, kParentSpanId = 4, kName = 5, kKind = 6,
              kStart = 7, kEnd = 8, kAttributes = 9, kStatus = 15;
}
namespace key_value_field { constexpr int kKey = 1, kValue = 2; }
namespace any_value_field { constexpr int kString = 1, kInt = 3; }
namespace status_field { constexpr int kMessage = 2, kCode = 3; }
constexpr uint64_t kSpanKindInternal = 1;
constexpr uint64_t kStatusCodeError = 2;

size_t VarintSize(uint64_t v) { return CodedOutputStream::VarintSize64(v); }

void Varint(std::string& out, uint64_t v) {
  uint8_t buffer[10];
  const uint8_t* end = CodedOutputStream::WriteVarint64ToArray(v, buffer);
  out.append(reinterpret_cast<const char*>(buffer), end - buffer);
}

void Tag(std::string& out, int field, WireFormatLite::WireType type) {
  Varint(out, WireFormatLite::MakeTag(field, type));
}

// A length-delimited field's tag and length; its `size` bytes follow.
void LenHeader(std::string& out, int field, size_t size) {
  Tag(out, field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  Varint(out, size);
}

// The size of a length-delimited field of `size` bytes (tags here take one byte: fields
// below 16).
size_t LenFieldSize(size_t size) { return 1 + VarintSize(size) + size; }

void Bytes(std::string& out, int field, std::string_view bytes) {
  LenHeader(out, field, bytes.size());
  out.append(bytes);
}

void VarintField(std::string& out, int field, uint64_t v) {
  Tag(out, field, WireFormatLite::WIRETYPE_VARINT);
  Varint(out, v);
}

void Fixed64(std::string& out, int field, uint64_t v) {
  Tag(out, field, WireFormatLite::WIRETYPE_FIXED64);
  uint8_t buffer[8];
  CodedOutputStream::WriteLittleEndian64ToArray(v, buffer);
  out.append(reinterpret_cast<const char*>(buffer), 8);
}

// A KeyValue under `field`, its value a string.
void TextKeyValue(std::string& out, int field, std::string_view key, std::string_view text) {
  const size_t any = LenFieldSize(text.size());
  LenHeader(out, field, LenFieldSize(key.size()) + LenFieldSize(any));
  Bytes(out, key_value_field::kKey, key);
  LenHeader(out, key_value_field::kValue, any);
  Bytes(out, any_value_field::kString, text);
}

uint64_t UnixNanos(absl::Time t) { return static_cast<uint64_t>(absl::ToUnixNanos(t)); }

}  // namespace

SpanWriter::SpanWriter(const TraceIdBytes& trace, const SpanIdBytes& span,
                       const SpanIdBytes* parent, std::string_view name, absl::Time start,
                       absl::Time end) {
  bytes_.reserve(256);  // a span with its usual attributes fits
  Bytes(bytes_, span_field::kTraceId, std::string_view(trace.data(), trace.size()));
  Bytes(bytes_, span_field::kSpanId, std::string_view(span.data(), span.size()));
  if (parent != nullptr) {
    Bytes(bytes_, span_field::kParentSpanId, std::string_view(parent->data(), parent->size()));
  }
  Bytes(bytes_, span_field::kName, name);
  VarintField(bytes_, span_field::kKind, kSpanKindInternal);
  Fixed64(bytes_, span_field::kStart, UnixNanos(start));
  Fixed64(bytes_, span_field::kEnd, UnixNanos(end));
}

void SpanWriter::Attribute(std::string_view key, std::string_view text) {
  TextKeyValue(bytes_, span_field::kAttributes, key, text);
}

void SpanWriter::Attribute(std::string_view key, int64_t number) {
  // An int64 is a varint of its two's complement (10 bytes when negative).
  const size_t any = 1 + VarintSize(static_cast<uint64_t>(number));
  LenHeader(bytes_, span_field::kAttributes, LenFieldSize(key.size()) + LenFieldSize(any));
  Bytes(bytes_, key_value_field::kKey, key);
  LenHeader(bytes_, key_value_field::kValue, any);
  VarintField(bytes_, any_value_field::kInt, static_cast<uint64_t>(number));
}

void SpanWriter::Error(std::string_view message) {
  // Field 15's tag is still one byte (15 << 3 | 2 = 122).
  LenHeader(bytes_, span_field::kStatus, LenFieldSize(message.size()) + 2);
  Bytes(bytes_, status_field::kMessage, message);
  VarintField(bytes_, status_field::kCode, kStatusCodeError);
}

std::string ExportRequest(std::string_view service_instance,
                          const std::vector<std::string>& spans) {
  std::string resource;
  TextKeyValue(resource, resource_field::kAttributes, "service.name", "jobstream");
  if (!service_instance.empty()) {
    TextKeyValue(resource, resource_field::kAttributes, "service.instance.id", service_instance);
  }
  constexpr std::string_view kScopeName = "jobstream-server";
  const size_t scope = LenFieldSize(kScopeName.size());
  size_t scope_spans = LenFieldSize(scope);
  for (const std::string& span : spans) scope_spans += LenFieldSize(span.size());
  const size_t resource_spans = LenFieldSize(resource.size()) + LenFieldSize(scope_spans);

  std::string out;
  out.reserve(LenFieldSize(resource_spans));
  LenHeader(out, request_field::kResourceSpans, resource_spans);
  Bytes(out, resource_spans_field::kResource, resource);
  LenHeader(out, resource_spans_field::kScopeSpans, scope_spans);
  LenHeader(out, scope_spans_field::kScope, scope);
  Bytes(out, scope_field::kName, kScopeName);
  for (const std::string& span : spans) Bytes(out, scope_spans_field::kSpans, span);
  return out;
}

}  // namespace jobstream::tracing
