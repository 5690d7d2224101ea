// Logs: one line per request and per job state change, as text (key=value) or, with
// --log_format=json, one JSON object per line. Lines are buffered and written by a
// background thread, so a busy server never waits on stderr. Callers choose the fields;
// they never pass a token or params.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jobstream::logs {

enum class Format { kText, kJson };
absl::StatusOr<Format> ParseFormat(absl::string_view name);  // "text" or "json"

// Starts logging to `out`; until then (and after Stop) lines go nowhere.
void Start(Format format, std::FILE* out = stderr);
// Writes what is buffered and stops.
void Stop();
bool Enabled();

// One line: the time and `kind` first, then the fields in order. Emitted when it goes
// out of scope.
class Line {
 public:
  explicit Line(absl::string_view kind);
  ~Line();
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;

  Line& Add(absl::string_view key, absl::string_view value);
  Line& Add(absl::string_view key, const char* value) { return Add(key, absl::string_view(value)); }
  Line& Add(absl::string_view key, int64_t value);
  Line& Add(absl::string_view key, double value);

 private:
  bool on_;
  Format format_;
  std::string text_;
};

}  // namespace jobstream::logs
