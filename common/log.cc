#include "common/log.h"

#include <atomic>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace jobstream::logs {
namespace {

constexpr size_t kFlushBytes = 256 << 10;

struct Sink {
  absl::Mutex mu;
  std::string buffer ABSL_GUARDED_BY(mu);
  std::FILE* out ABSL_GUARDED_BY(mu) = nullptr;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::thread writer;
  std::atomic<bool> on{false};
  Format format = Format::kText;
};

Sink& TheSink() {
  static Sink* sink = new Sink();  // never destroyed: lines may come until exit
  return *sink;
}

void WriteLoop(Sink* sink) {
  absl::MutexLock lock(&sink->mu);
  for (;;) {
    auto ready = [sink]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sink->mu) {
      return sink->stopping || sink->buffer.size() >= kFlushBytes;
    };
    sink->mu.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
    std::string out;
    out.swap(sink->buffer);
    std::FILE* file = sink->out;
    const bool stop = sink->stopping;
    if (!out.empty()) {
      sink->mu.Unlock();
      std::fwrite(out.data(), 1, out.size(), file);
      std::fflush(file);
      sink->mu.Lock();
    }
    if (stop && sink->buffer.empty()) return;
  }
}

// JSON string contents: quotes, backslashes and control characters escaped.
void AppendJsonEscaped(std::string* out, absl::string_view s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

// Text values: bare when plain, else quoted with the same escapes.
void AppendTextValue(std::string* out, absl::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s) plain = plain && c > 0x20 && c != '"' && c != '\\' && c != 0x7f;
  if (plain) {
    out->append(s.data(), s.size());
    return;
  }
  out->push_back('"');
  AppendJsonEscaped(out, s);
  out->push_back('"');
}

}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--log_format must be text or json, not \"", name.substr(0, 32), "\""));
}

void Start(Format format, std::FILE* out) {
  Sink& sink = TheSink();
  {
    absl::MutexLock lock(&sink.mu);
    if (sink.on.load()) return;
    sink.out = out;
    sink.stopping = false;
    sink.format = format;
  }
  sink.writer = std::thread(WriteLoop, &sink);
  sink.on.store(true);
}

void Stop() {
  Sink& sink = TheSink();
  if (!sink.on.exchange(false)) return;
  {
    absl::MutexLock lock(&sink.mu);
    sink.stopping = true;
  }
  sink.writer.join();
}

bool Enabled() { return TheSink().on.load(std::memory_order_relaxed); }

Line::Line(absl::string_view kind) : on_(Enabled()), format_(TheSink().format) {
  if (!on_) return;
  const std::string time =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  if (format_ == Format::kJson) {
    absl::StrAppend(&text_, "{\"time\":\"", time, "\",\"kind\":\"");
    AppendJsonEscaped(&text_, kind);
    text_.push_back('"');
  } else {
    absl::StrAppend(&text_, time, " ", kind);
  }
}

Line& Line::Add(absl::string_view key, absl::string_view value) {
  if (!on_) return *this;
  if (format_ == Format::kJson) {
    absl::StrAppend(&text_, ",\"", key, "\":\"");
    AppendJsonEscaped(&text_, value);
    text_.push_back('"');
  } else {
    absl::StrAppend(&text_, " ", key, "=");
    AppendTextValue(&text_, value);
  }
  return *this;
}

Line& Line::Add(absl::string_view key, int64_t value) {
  if (!on_) return *this;
  if (format_ == Format::kJson) {
    absl::StrAppend(&text_, ",\"", key, "\":", value);
  } else {
    absl::StrAppend(&text_, " ", key, "=", value);
  }
  return *this;
}

Line& Line::Add(absl::string_view key, double value) {
  if (!on_) return *this;
  const std::string number = absl::StrFormat("%.3f", value);
  if (format_ == Format::kJson) {
    absl::StrAppend(&text_, ",\"", key, "\":", number);
  } else {
    absl::StrAppend(&text_, " ", key, "=", number);
  }
  return *this;
}

Line::~Line() {
  if (!on_) return;
  if (format_ == Format::kJson) text_.push_back('}');
  text_.push_back('\n');
  Sink& sink = TheSink();
  absl::MutexLock lock(&sink.mu);
  if (sink.buffer.size() < (64 << 20)) sink.buffer.append(text_);  // a stuck stderr drops lines
}

}  // namespace jobstream::logs
