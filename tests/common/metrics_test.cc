#include "common/metrics.h"

#include <cstdio>
#include <limits>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace jobstream::metrics {
namespace {

TEST(MetricsTest, EachKindRendersInPrometheusTextFormat) {
  Registry r;
  r.DeclareCounter("jobs_done_total", "Jobs that ended, by type.", "type");
  r.DeclareGauge("watchers", "Open watchers.");
  r.DeclareHistogram("wait_seconds", "Queue wait.", {0.5, 1, 2.5}, "type");
  r.DeclareGaugeFunc("queued", "Queued now, by type.", "type", [] {
    return std::vector<std::pair<std::string, double>>{{"b", 2}, {"a", 1}};
  });
  r.counter("jobs_done_total", "render")->Add(3);
  r.counter("jobs_done_total", "mail")->Add();
  r.gauge("watchers")->Set(7);
  r.gauge("watchers")->Add(-2.5);
  Histogram* h = r.histogram("wait_seconds", "mail");
  for (double v : {0.1, 0.5, 0.75, 3.0}) h->Observe(v);
  EXPECT_EQ(r.Render(),
            "# HELP jobs_done_total Jobs that ended, by type.\n"
            "# TYPE jobs_done_total counter\n"
            "jobs_done_total{type=\"mail\"} 1\n"
            "jobs_done_total{type=\"render\"} 3\n"
            "# HELP watchers Open watchers.\n"
            "# TYPE watchers gauge\n"
            "watchers 4.5\n"
            "# HELP wait_seconds Queue wait.\n"
            "# TYPE wait_seconds histogram\n"
            "wait_seconds_bucket{type=\"mail\",le=\"0.5\"} 2\n"
            "wait_seconds_bucket{type=\"mail\",le=\"1\"} 3\n"
            "wait_seconds_bucket{type=\"mail\",le=\"2.5\"} 3\n"
            "wait_seconds_bucket{type=\"mail\",le=\"+Inf\"} 4\n"
            "wait_seconds_sum{type=\"mail\"} 4.35\n"
            "wait_seconds_count{type=\"mail\"} 4\n"
            "# HELP queued Queued now, by type.\n"
            "# TYPE queued gauge\n"
            "queued{type=\"a\"} 1\n"
            "queued{type=\"b\"} 2\n");
  EXPECT_EQ(r.counter("jobs_done_total", "render"), r.counter("jobs_done_total", "render"))
      << "a series is made once and kept";
}

TEST(MetricsTest, ValuesAndLabelsAreWrittenSoTheyReadBack) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(FormatValue(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(1e300), "1e+300");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  Registry r;
  r.DeclareCounter("odd_total", "Help with a \\ and a\nnewline.", "type");
  r.counter("odd_total", "quote\" and \\ and\nnewline")->Add();
  EXPECT_EQ(r.Render(),
            "# HELP odd_total Help with a \\\\ and a\\nnewline.\n"
            "# TYPE odd_total counter\n"
            "odd_total{type=\"quote\\\" and \\\\ and\\nnewline\"} 1\n");
}

TEST(MetricsTest, AFamilyHoldsAtMostMaxSeriesTheRestCountAsOther) {
  Registry r(/*max_series=*/3);
  r.DeclareCounter("by_type_total", "x", "type");
  for (int i = 0; i < 100; ++i) r.counter("by_type_total", "t" + std::to_string(i))->Add();
  const std::string text = r.Render();
  EXPECT_NE(text.find("by_type_total{type=\"t0\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("by_type_total{type=\"t1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("by_type_total{type=\"_other\"} 98\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("t2\""), std::string::npos) << text;
  r.counter("by_type_total", "t0")->Add();  // one already held keeps its own series
  EXPECT_NE(r.Render().find("by_type_total{type=\"t0\"} 2\n"), std::string::npos);
}

TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Registry r;
  r.DeclareCounter("adds_total", "x", "type");
  r.DeclareHistogram("lat_seconds", "x", LatencyBuckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&r, t] {
      for (int i = 0; i < 20000; ++i) {
        r.counter("adds_total", t % 2 ? "odd" : "even")->Add();
        r.histogram("lat_seconds")->Observe(0.002);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.counter("adds_total", "odd")->value(), 80000);
  EXPECT_EQ(r.counter("adds_total", "even")->value(), 80000);
  const Histogram::Snapshot s = r.histogram("lat_seconds")->Read();
  EXPECT_EQ(s.count, 160000);
  EXPECT_EQ(s.cumulative[0], 0) << "0.002 > 0.001";
  EXPECT_EQ(s.cumulative[1], 160000) << "0.002 <= 0.0025";
  EXPECT_NEAR(s.sum, 320, 1e-6);
}

TEST(MetricsDeathTest, MisdeclaredMetricsAreABugCaughtAtOnce) {
  Registry r;
  EXPECT_DEATH(r.DeclareCounter("jobs", "no _total"), "does not end in _total");
  EXPECT_DEATH(r.DeclareGauge("1abc", "x"), "bad metric name");
  EXPECT_DEATH(r.DeclareGauge("ok", "x", "le"), "bad label name");
  EXPECT_DEATH(r.DeclareHistogram("h_seconds", "x", {1, 1}), "not ascending");
  r.DeclareGauge("g", "x");
  EXPECT_DEATH(r.DeclareGauge("g", "x"), "declared twice");
  EXPECT_DEATH(r.counter("g"), "another kind");
  EXPECT_DEATH(r.counter("never_total"), "never declared");
}

TEST(MetricsTest, PromtoolFindsNothingToSayAboutIt) {
  if (testing::RunCommand("command -v promtool").first != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian's prometheus package; scripts/test.sh "
                    "installs it)";
  }
  Registry r;
  r.DeclareCounter("jobstream_jobs_submitted_total", "Jobs submitted, by type.", "type");
  r.DeclareGauge("jobstream_watchers", "Open watchers.");
  r.DeclareHistogram("jobstream_queue_wait_seconds", "Created to started, by type.",
                     LatencyBuckets(), "type");
  r.DeclareGaugeFunc("jobstream_jobs_queued", "Queued now, by type.", "type",
                     [] { return std::vector<std::pair<std::string, double>>{{"a\"b", 1}}; });
  r.counter("jobstream_jobs_submitted_total", "demo.steps")->Add(5);
  r.gauge("jobstream_watchers")->Set(2);
  r.histogram("jobstream_queue_wait_seconds", "x\ny")->Observe(0.3);
  testing::TempDir dir;
  const std::string file = dir.sub("metrics.txt");
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs(r.Render().c_str(), f);
  fclose(f);
  auto [code, out] = testing::RunCommand("promtool check metrics < " + file + " 2>&1");
  EXPECT_EQ(code, 0) << out << "\n" << r.Render();
  EXPECT_EQ(out, "") << out;
}

}  // namespace
}  // namespace jobstream::metrics
