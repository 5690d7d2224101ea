// The spans SpanWriter encodes by hand are what OTLP's generated classes parse, field for
// field; a request of many spans (lengths of several varint bytes) too.
#include "server/tracing/otlp_wire.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace jobstream::tracing {
namespace {

namespace otlp = opentelemetry::proto;

TEST(OtlpWireTest, IdBytesReadLowerCaseHexOnly) {
  SpanIdBytes id{};
  ASSERT_TRUE(IdBytes("00f067aa0ba902b7", id));
  EXPECT_EQ(std::string(id.data(), id.size()), std::string("\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8));
  SpanIdBytes untouched = id;
  EXPECT_FALSE(IdBytes("00F067AA0BA902B7", untouched)) << "W3C ids are lower case";
  EXPECT_FALSE(IdBytes("00f067aa0ba902b", untouched)) << "too short";
  EXPECT_FALSE(IdBytes("00f067aa0ba902bz", untouched));
  EXPECT_EQ(untouched, id) << "a refused id leaves the bytes as they were";
}

TEST(OtlpWireTest, ASpanParsesAsTheGeneratedClassesWriteIt) {
  TraceIdBytes trace;
  SpanIdBytes span, parent;
  ASSERT_TRUE(IdBytes("4bf92f3577b34da6a3ce929d0e0e4736", trace));
  ASSERT_TRUE(IdBytes("00f067aa0ba902b7", span));
  ASSERT_TRUE(IdBytes("b7ad6b7169203331", parent));
  const absl::Time start = absl::FromUnixNanos(1765000000123456789);
  const absl::Time end = start + absl::Milliseconds(1500);
  SpanWriter writer(trace, span, &parent, "attempt 2", start, end);
  writer.Attribute("jobstream.job.id", "01m97wrhkpps0mm0n1x13hr3a8");
  writer.Attribute("jobstream.attempt", int64_t{2});
  writer.Attribute("jobstream.negative", int64_t{-5});
  writer.Attribute("jobstream.empty", "");
  const std::string long_text(300, 'x');  // lengths of two varint bytes
  writer.Attribute("jobstream.long", long_text);
  writer.Error("exit status 3: " + std::string(200, 'e'));

  const std::string ours = std::move(writer).Finish();
  otlp::trace::v1::Span parsed;
  ASSERT_TRUE(parsed.ParseFromString(ours));
  EXPECT_EQ(parsed.trace_id(), std::string(trace.data(), 16));
  EXPECT_EQ(parsed.span_id(), std::string(span.data(), 8));
  EXPECT_EQ(parsed.parent_span_id(), std::string(parent.data(), 8));
  EXPECT_EQ(parsed.name(), "attempt 2");
  EXPECT_EQ(parsed.kind(), otlp::trace::v1::Span::SPAN_KIND_INTERNAL);
  EXPECT_EQ(parsed.start_time_unix_nano(), 1765000000123456789u);
  EXPECT_EQ(parsed.end_time_unix_nano(), 1765000001623456789u);
  ASSERT_EQ(parsed.attributes_size(), 5);
  EXPECT_EQ(parsed.attributes(0).key(), "jobstream.job.id");
  EXPECT_EQ(parsed.attributes(0).value().string_value(), "01m97wrhkpps0mm0n1x13hr3a8");
  EXPECT_EQ(parsed.attributes(1).value().int_value(), 2);
  EXPECT_EQ(parsed.attributes(2).value().int_value(), -5);
  EXPECT_EQ(parsed.attributes(3).value().value_case(), otlp::common::v1::AnyValue::kStringValue);
  EXPECT_EQ(parsed.attributes(3).value().string_value(), "");
  EXPECT_EQ(parsed.attributes(4).value().string_value(), long_text);
  EXPECT_EQ(parsed.status().code(), otlp::trace::v1::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(parsed.status().message(), "exit status 3: " + std::string(200, 'e'));

  // Byte for byte what the generated classes write for the same span (they write fields
  // in number order, as SpanWriter does).
  EXPECT_EQ(parsed.SerializeAsString(), ours);
}

TEST(OtlpWireTest, ARootSpanHasNoParentAndNoStatus) {
  TraceIdBytes trace;
  SpanIdBytes span;
  ASSERT_TRUE(IdBytes("4bf92f3577b34da6a3ce929d0e0e4736", trace));
  ASSERT_TRUE(IdBytes("00f067aa0ba902b7", span));
  otlp::trace::v1::Span parsed;
  ASSERT_TRUE(parsed.ParseFromString(
      SpanWriter(trace, span, nullptr, "job report", absl::UnixEpoch(), absl::UnixEpoch())
          .Finish()));
  EXPECT_TRUE(parsed.parent_span_id().empty());
  EXPECT_FALSE(parsed.has_status());
  EXPECT_EQ(parsed.attributes_size(), 0);
}

TEST(OtlpWireTest, ARequestHoldsTheResourceTheScopeAndEverySpanInOrder) {
  TraceIdBytes trace;
  SpanIdBytes span;
  ASSERT_TRUE(IdBytes("4bf92f3577b34da6a3ce929d0e0e4736", trace));
  ASSERT_TRUE(IdBytes("00f067aa0ba902b7", span));
  for (size_t count : {size_t{0}, size_t{1}, size_t{2000}}) {
    SCOPED_TRACE(count);
    std::vector<std::string> spans;
    for (size_t i = 0; i < count; ++i) {
      SpanWriter w(trace, span, nullptr, "span " + std::to_string(i), absl::UnixEpoch(),
                   absl::UnixEpoch());
      w.Attribute("i", static_cast<int64_t>(i));
      spans.push_back(std::move(w).Finish());
    }
    otlp::collector::trace::v1::ExportTraceServiceRequest request;
    ASSERT_TRUE(request.ParseFromString(ExportRequest("server-7", spans)));
    ASSERT_EQ(request.resource_spans_size(), 1);
    const auto& rs = request.resource_spans(0);
    ASSERT_EQ(rs.resource().attributes_size(), 2);
    EXPECT_EQ(rs.resource().attributes(0).key(), "service.name");
    EXPECT_EQ(rs.resource().attributes(0).value().string_value(), "jobstream");
    EXPECT_EQ(rs.resource().attributes(1).key(), "service.instance.id");
    EXPECT_EQ(rs.resource().attributes(1).value().string_value(), "server-7");
    ASSERT_EQ(rs.scope_spans_size(), 1);
    EXPECT_EQ(rs.scope_spans(0).scope().name(), "jobstream-server");
    ASSERT_EQ(static_cast<size_t>(rs.scope_spans(0).spans_size()), count);
    for (size_t i = 0; i < count; ++i) {
      EXPECT_EQ(rs.scope_spans(0).spans(static_cast<int>(i)).name(), "span " + std::to_string(i));
      EXPECT_EQ(rs.scope_spans(0).spans(static_cast<int>(i)).attributes(0).value().int_value(),
                static_cast<int64_t>(i));
    }
  }
  otlp::collector::trace::v1::ExportTraceServiceRequest anonymous;
  ASSERT_TRUE(anonymous.ParseFromString(ExportRequest("", {})));
  EXPECT_EQ(anonymous.resource_spans(0).resource().attributes_size(), 1)
      << "no service.instance.id when none is given";
}

}  // namespace
}  // namespace jobstream::tracing
