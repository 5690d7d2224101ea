#include "common/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace jobstream::metrics {
namespace {

[[noreturn]] void Bug(const std::string& what) {
  std::cerr << "jobstream metrics: " << what << "\n";
  std::abort();
}

bool ValidName(const std::string& name) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != ':') return false;
  }
  return true;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  char buf[64];
  // The shortest that reads back the same, in fixed notation unless tiny or huge (as Go's
  // %g does): 0.0005, never 5e-04, so a bucket's le="0.0005" reads as clients write it.
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  return std::string(buf, end);
}

void Gauge::Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<int64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_->size() && v > (*bounds_)[i]) ++i;  // a dozen bounds: a scan is fine
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  int64_t running = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
          2.5,   5,      10,    30,   60,    120,  300, 600};
}

Registry::Family& Registry::Declare(Kind kind, const std::string& name, const std::string& help,
                                    const std::string& label) {
  if (!ValidName(name)) Bug("bad metric name \"" + name + "\"");
  if (!label.empty() && (!ValidName(label) || absl::StartsWith(label, "__") || label == "le")) {
    Bug("bad label name \"" + label + "\" for " + name);
  }
  if (kind == Kind::kCounter && !absl::EndsWith(name, "_total")) {
    Bug("counter " + name + " does not end in _total");
  }
  for (const auto& f : families_) {
    if (f->name == name) Bug(name + " declared twice");
  }
  auto family = std::make_unique<Family>();
  family->kind = kind;
  family->name = name;
  family->help = help;
  family->label = label;
  families_.push_back(std::move(family));
  return *families_.back();
}

Registry::Family& Registry::Find(Kind kind, const std::string& name) {
  for (const auto& f : families_) {
    if (f->name != name) continue;
    if (f->kind != kind) Bug(name + " used as another kind of metric than declared");
    return *f;
  }
  Bug(name + " was never declared");
}

template <typename Series, typename Make>
Series* Registry::SeriesOf(std::map<std::string, std::unique_ptr<Series>>& series,
                           const std::string& label_value, Make make) {
  auto it = series.find(label_value);
  if (it != series.end()) return it->second.get();
  // One place is kept for kOtherLabel: at most max_series_ series in all.
  auto& slot = series[series.size() + 1 < max_series_ ? label_value : kOtherLabel];
  if (!slot) slot = make();
  return slot.get();
}

void Registry::DeclareCounter(const std::string& name, const std::string& help,
                              const std::string& label) {
  absl::MutexLock lock(&mu_);
  Family& f = Declare(Kind::kCounter, name, help, label);
  if (label.empty()) f.counters[""] = std::make_unique<Counter>();  // its one series, at 0
}

void Registry::DeclareGauge(const std::string& name, const std::string& help,
                            const std::string& label) {
  absl::MutexLock lock(&mu_);
  Family& f = Declare(Kind::kGauge, name, help, label);
  if (label.empty()) f.gauges[""] = std::make_unique<Gauge>();
}

void Registry::DeclareHistogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds, const std::string& label) {
  for (size_t i = 1; i < bounds.size(); ++i) {
    if (!(bounds[i - 1] < bounds[i])) Bug("the buckets of " + name + " are not ascending");
  }
  absl::MutexLock lock(&mu_);
  Family& f = Declare(Kind::kHistogram, name, help, label);
  f.bounds = std::move(bounds);
  if (label.empty()) f.histograms[""] = std::make_unique<Histogram>(&f.bounds);
}

void Registry::DeclareGaugeFunc(const std::string& name, const std::string& help,
                                const std::string& label, Collect collect) {
  absl::MutexLock lock(&mu_);
  Declare(Kind::kGaugeFunc, name, help, label).collect = std::move(collect);
}

Counter* Registry::counter(const std::string& name, const std::string& label_value) {
  absl::MutexLock lock(&mu_);
  return SeriesOf(Find(Kind::kCounter, name).counters, label_value,
                  [] { return std::make_unique<Counter>(); });
}

Gauge* Registry::gauge(const std::string& name, const std::string& label_value) {
  absl::MutexLock lock(&mu_);
  return SeriesOf(Find(Kind::kGauge, name).gauges, label_value,
                  [] { return std::make_unique<Gauge>(); });
}

Histogram* Registry::histogram(const std::string& name, const std::string& label_value) {
  absl::MutexLock lock(&mu_);
  Family& f = Find(Kind::kHistogram, name);
  return SeriesOf(f.histograms, label_value,
                  [&f] { return std::make_unique<Histogram>(&f.bounds); });
}

std::string Registry::Render() const {
  // The callbacks run outside the lock: they may take locks of their own.
  std::vector<std::pair<const Family*, std::vector<std::pair<std::string, double>>>> collected;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& f : families_) {
      if (f->kind == Kind::kGaugeFunc) collected.push_back({f.get(), {}});
    }
  }
  for (auto& [family, values] : collected) values = family->collect();

  std::string out;
  absl::MutexLock lock(&mu_);
  auto labels = [](const Family& f, const std::string& value, const std::string& extra = "") {
    std::string inner;
    if (!f.label.empty()) inner = absl::StrCat(f.label, "=\"", EscapeLabelValue(value), "\"");
    if (!extra.empty()) inner = inner.empty() ? extra : absl::StrCat(inner, ",", extra);
    return inner.empty() ? std::string() : absl::StrCat("{", inner, "}");
  };
  for (const auto& owned : families_) {
    const Family& f = *owned;
    const char* type = f.kind == Kind::kCounter     ? "counter"
                       : f.kind == Kind::kHistogram ? "histogram"
                                                    : "gauge";
    absl::StrAppend(&out, "# HELP ", f.name, " ", EscapeHelp(f.help), "\n# TYPE ", f.name, " ",
                    type, "\n");
    switch (f.kind) {
      case Kind::kCounter:
        for (const auto& [value, c] : f.counters) {
          absl::StrAppend(&out, f.name, labels(f, value), " ", c->value(), "\n");
        }
        break;
      case Kind::kGauge:
        for (const auto& [value, g] : f.gauges) {
          absl::StrAppend(&out, f.name, labels(f, value), " ", FormatValue(g->value()), "\n");
        }
        break;
      case Kind::kGaugeFunc:
        for (const auto& [family, values] : collected) {
          if (family != &f) continue;
          std::map<std::string, double> sorted(values.begin(), values.end());
          for (const auto& [value, v] : sorted) {
            absl::StrAppend(&out, f.name, labels(f, value), " ", FormatValue(v), "\n");
          }
        }
        break;
      case Kind::kHistogram:
        for (const auto& [value, h] : f.histograms) {
          const Histogram::Snapshot s = h->Read();
          for (size_t i = 0; i < f.bounds.size(); ++i) {
            absl::StrAppend(&out, f.name, "_bucket",
                            labels(f, value, absl::StrCat("le=\"", FormatValue(f.bounds[i]), "\"")),
                            " ", s.cumulative[i], "\n");
          }
          absl::StrAppend(&out, f.name, "_bucket", labels(f, value, "le=\"+Inf\""), " ", s.count,
                          "\n", f.name, "_sum", labels(f, value), " ", FormatValue(s.sum), "\n",
                          f.name, "_count", labels(f, value), " ", s.count, "\n");
        }
        break;
    }
  }
  return out;
}

}  // namespace jobstream::metrics
