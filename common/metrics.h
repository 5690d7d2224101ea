// Metrics: counters, gauges and histograms, each family with at most one label, rendered in
// Prometheus' text exposition format (version 0.0.4) for a scrape.
//
// A series is made on its first use and kept for the process's life, so a label's values
// must come from a bounded set (a job type, an outcome), never from ids. A family holds at
// most `max_series` series, "_other" included: label values that come once it is full are
// counted under "_other", so a flood of new types can never grow a scrape without bound.
//
// Recording is a relaxed atomic add on a series found by a short locked map lookup: cheap
// enough for every state change. Callers on a hot path keep the returned series pointer
// (stable for the registry's life) and skip the lookup.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace jobstream::metrics {

// The label value a family counts under once it holds max_series values.
inline constexpr char kOtherLabel[] = "_other";

class Counter {
 public:
  void Add(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, ascending (the +Inf bucket is implied).
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v);
  struct Snapshot {
    std::vector<int64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    int64_t count = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double>* const bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;  // per bound, then +Inf; not cumulative
  std::atomic<double> sum_{0};
};

// Bucket bounds, in seconds, for latencies from a millisecond to ten minutes.
std::vector<double> LatencyBuckets();

class Registry {
 public:
  explicit Registry(size_t max_series = 500) : max_series_(max_series) {}
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Declares a family; `label` is its label's name, or "" for a single series (made now,
  // so it is scraped at 0 before its first use). Names must
  // be valid metric names (counters end in _total); declaring one twice is a bug (abort).
  void DeclareCounter(const std::string& name, const std::string& help,
                      const std::string& label = "");
  void DeclareGauge(const std::string& name, const std::string& help,
                    const std::string& label = "");
  void DeclareHistogram(const std::string& name, const std::string& help,
                        std::vector<double> bounds, const std::string& label = "");
  // A gauge read at each scrape: (label value, value) pairs (one with "" if unlabelled).
  using Collect = std::function<std::vector<std::pair<std::string, double>>()>;
  void DeclareGaugeFunc(const std::string& name, const std::string& help,
                        const std::string& label, Collect collect);

  // The series of a declared family for a label value ("" if unlabelled); aborts if the
  // family was not declared as that kind.
  Counter* counter(const std::string& name, const std::string& label_value = "");
  Gauge* gauge(const std::string& name, const std::string& label_value = "");
  Histogram* histogram(const std::string& name, const std::string& label_value = "");

  // Every family in declaration order, each series in label order.
  std::string Render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram, kGaugeFunc };
  struct Family {
    Kind kind;
    std::string name, help, label;
    std::vector<double> bounds;  // histograms
    Collect collect;             // kGaugeFunc
    // std::map: stable addresses, and sorted for rendering.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& Declare(Kind kind, const std::string& name, const std::string& help,
                  const std::string& label) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Family& Find(Kind kind, const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The series of `label_value` in `series`, made by `make` on first use (under
  // kOtherLabel once the family is full).
  template <typename Series, typename Make>
  Series* SeriesOf(std::map<std::string, std::unique_ptr<Series>>& series,
                   const std::string& label_value, Make make) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_series_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

// A label value as Prometheus' text format quotes it (backslash, quote and newline escaped).
std::string EscapeLabelValue(const std::string& value);
// A sample value: integers as integers, others in the shortest form that reads back the
// same, +Inf, -Inf and NaN as Prometheus spells them.
std::string FormatValue(double v);

}  // namespace jobstream::metrics
