#include "server/tracing/trace_context.h"

#include <set>

#include "gtest/gtest.h"

namespace jobstream::tracing {
namespace {

constexpr char kTrace[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kSpan[] = "00f067aa0ba902b7";

TEST(TraceContextTest, ReadsAW3cTraceparentAndWritesItBack) {
  auto c = ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->trace_id, kTrace);
  EXPECT_EQ(c->span_id, kSpan);
  EXPECT_TRUE(c->sampled);
  EXPECT_EQ(FormatTraceparent(*c), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  auto unsampled = ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled.has_value());
  EXPECT_FALSE(unsampled->sampled);
  EXPECT_TRUE(ParseTraceparent(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03 ")->sampled)
      << "surrounding spaces, and other flag bits, are allowed";
  // A later version may add fields after a dash; version 00 may not.
  EXPECT_TRUE(ParseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").has_value());
  EXPECT_FALSE(ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").has_value());
}

TEST(TraceContextTest, RefusesWhatW3cSaysToIgnore) {
  for (const char* bad : {
           "",
           "garbage",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero span
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
           "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   // short trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",   // short span id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // flags not hex
           "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  // no dash after
       }) {
    EXPECT_FALSE(ParseTraceparent(bad).has_value()) << bad;
  }
}

TEST(TraceContextTest, AJobIsAChildOfItsCallerOrARootAndItsAttemptsHaveStableIds) {
  const v1::TraceContext child = NewJobTrace(SpanContext{kTrace, kSpan, false});
  EXPECT_EQ(child.trace_id(), kTrace);
  EXPECT_EQ(child.parent_span_id(), kSpan);
  EXPECT_FALSE(child.sampled());
  EXPECT_TRUE(ParseTraceparent(FormatTraceparent({child.trace_id(), child.span_id(), true})));
  const v1::TraceContext root = NewJobTrace(std::nullopt);
  EXPECT_EQ(root.trace_id().size(), 32u);
  EXPECT_TRUE(root.parent_span_id().empty());
  EXPECT_TRUE(root.sampled());
  EXPECT_NE(root.trace_id(), NewJobTrace(std::nullopt).trace_id());

  std::set<std::string> ids = {root.span_id()};
  for (int attempt = 1; attempt <= 50; ++attempt) {
    EXPECT_EQ(AttemptSpanId(root, attempt), AttemptSpanId(root, attempt)) << "the same each time";
    EXPECT_TRUE(ids.insert(AttemptSpanId(root, attempt)).second);
    EXPECT_TRUE(ids.insert(WaitSpanId(root, attempt)).second);
  }
  EXPECT_NE(AttemptSpanId(root, 1), AttemptSpanId(child, 1)) << "each job's own";
  EXPECT_EQ(AttemptTraceparent(child, 2),
            "00-" + std::string(kTrace) + "-" + AttemptSpanId(child, 2) + "-00");
  EXPECT_EQ(AttemptTraceparent(v1::TraceContext(), 1), "") << "a job from before traces";
}

// Head sampling: a root trace is sampled by its id's low 56 bits (so every server decides
// alike); a child follows its parent's flag whatever the ratio.
TEST(TraceContextTest, RootsAreSampledAtTheRatioChildrenAsTheirParents) {
  SetRootSampleRatio(0.25);
  int sampled = 0;
  for (int i = 0; i < 4000; ++i) {
    const v1::TraceContext trace = NewJobTrace(std::nullopt);
    EXPECT_EQ(trace.sampled(), SampledRoot(trace.trace_id())) << "decided by the id alone";
    sampled += trace.sampled();
  }
  EXPECT_GT(sampled, 800);   // 1,000 expected; 7 standard deviations either side
  EXPECT_LT(sampled, 1200);
  EXPECT_TRUE(SampledRoot("4bf92f3577b34da6a3000000000000ff"));
  EXPECT_FALSE(SampledRoot("4bf92f3577b34da6a3ffffffffffffff"));
  SetRootSampleRatio(0);
  EXPECT_FALSE(NewJobTrace(std::nullopt).sampled());
  EXPECT_TRUE(NewJobTrace(SpanContext{kTrace, kSpan, true}).sampled()) << "the caller's flag";
  SetRootSampleRatio(1);
  EXPECT_FALSE(NewJobTrace(SpanContext{kTrace, kSpan, false}).sampled());
  EXPECT_TRUE(NewJobTrace(std::nullopt).sampled());
}

}  // namespace
}  // namespace jobstream::tracing
