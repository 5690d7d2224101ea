#include "server/exec/program.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "jobstream/v1/config.pb.h"
#include "server/exec/child_process.h"

extern char** environ;

namespace jobstream::exec {
namespace {

constexpr int kMaxLoggedLines = 5;
constexpr size_t kMaxErrorMessage = 4096;

// `s` with every byte that is not part of valid UTF-8 replaced by '?': stderr is
// arbitrary bytes, and an error message is a proto3 string.
std::string ValidUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
    if (ok && n > 1) {
      // No overlong forms, surrogates or code points past U+10FFFF.
      uint32_t cp = c & (0xFF >> (n + 1));
      for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
      ok = (n == 2 && cp >= 0x80) || (n == 3 && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ||
           (n == 4 && cp >= 0x10000 && cp <= 0x10FFFF);
    }
    if (ok) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}


// Reads stdout (through ProgramOutput) and keeps the last of stderr.
class OutputReader {
 public:
  OutputReader(const ProgramOptions& options, const ProgramHooks& hooks)
      : options_(options), output_(options, hooks) {}

  // Reads what `fd` has now; false at EOF (or error).
  bool ReadStdout(int fd) {
    return ReadAll(fd, [this](absl::string_view data) { output_.Append(data); });
  }
  bool ReadStderr(int fd) {
    return ReadAll(fd, [this](absl::string_view data) {
      stderr_.append(data.data(), data.size());
      if (stderr_.size() > 4 * options_.stderr_tail_bytes) Trim();
    });
  }
  void Finish() { output_.Finish(); }
  std::string StderrTail() {
    Trim();
    return ValidUtf8(absl::StripAsciiWhitespace(stderr_));
  }
  const std::optional<google::protobuf::Value>& result() const { return output_.result(); }
  const std::optional<v1::ProgramError>& error() const { return output_.error(); }

 private:
  template <typename F>
  static bool ReadAll(int fd, F&& consume) {
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) {
        consume(absl::string_view(buf, n));
        if (static_cast<size_t>(n) < sizeof buf) return true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;  // EOF or error
    }
  }
  void Trim() {
    if (stderr_.size() > options_.stderr_tail_bytes) {
      stderr_.erase(0, stderr_.size() - options_.stderr_tail_bytes);
    }
  }

  const ProgramOptions& options_;
  ProgramOutput output_;
  std::string stderr_;
};

}  // namespace

void ProgramOutput::Append(absl::string_view data) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    absl::string_view part = data.substr(0, nl);
    if (!skipping_) {
      if (line_.size() + part.size() > options_.max_line_bytes) {
        Skip(absl::StrCat("a line over ", options_.max_line_bytes, " bytes"));
        skipping_ = true;
        line_.clear();
      } else {
        line_.append(part.data(), part.size());
      }
    }
    if (nl == absl::string_view::npos) return;
    if (!skipping_) HandleLine(line_);
    line_.clear();
    skipping_ = false;
    data.remove_prefix(nl + 1);
  }
}

void ProgramOutput::Finish() {
  // A last line without a newline still counts.
  if (!skipping_ && !line_.empty()) HandleLine(line_);
  line_.clear();
  if (skipped_ > kMaxLoggedLines && hooks_.log) {
    hooks_.log(absl::StrCat(skipped_ - kMaxLoggedLines, " more lines skipped"));
  }
}

void ProgramOutput::Skip(absl::string_view why) {
  if (++skipped_ <= kMaxLoggedLines && hooks_.log) hooks_.log(absl::StrCat("skipped ", why));
}

void ProgramOutput::HandleLine(absl::string_view raw) {
  absl::string_view line = absl::StripAsciiWhitespace(raw);
  if (line.empty() || line[0] != '{') return;  // plain output: not for us
  v1::ProgramLine parsed;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(line.data(), line.size()), &parsed, options);
  if (!status.ok()) {
    Skip(absl::StrCat("a malformed line (", status.message().as_string(), "): ",
                      line.substr(0, 200)));
    return;
  }
  if (parsed.has_result()) result_ = parsed.result();
  if (parsed.has_error()) error_ = parsed.error();
  if (!parsed.step().empty() || parsed.has_fraction() || !parsed.message().empty()) {
    v1::Progress progress;
    progress.set_step(parsed.step());
    progress.set_step_index(parsed.step_index());
    progress.set_step_count(parsed.step_count());
    if (parsed.has_fraction()) progress.set_fraction(parsed.fraction());
    progress.set_message(parsed.message());
    if (hooks_.report) hooks_.report(progress);
  }
}

std::vector<std::string> ProgramEnvironment(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == absl::string_view::npos) continue;
    env[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(absl::StrCat(k, "=", v));
  return out;
}

ProgramOutcome RunProgram(const ProgramOptions& options, const std::string& stdin_data,
                          const ProgramHooks& hooks) {
  ProgramOutcome outcome;
  SpawnOptions spawn{options.argv, ProgramEnvironment(options.env), options.working_dir};
  auto child = ChildProcess::Spawn(spawn);
  if (!child.ok()) {
    outcome.result = child.status();
    return outcome;
  }
  ChildProcess& process = **child;
  OutputReader reader(options, hooks);

  size_t written = 0;
  bool out_open = true, err_open = true;
  bool stopping = false, killed = false;
  absl::Time kill_at = absl::InfiniteFuture();
  int wait_status = 0;
  for (;;) {
    if (!stopping && hooks.stop && hooks.stop()) {
      stopping = true;
      process.SignalGroup(SIGTERM);
      kill_at = absl::Now() + options.kill_grace;
    }
    if (stopping && !killed && absl::Now() >= kill_at) {
      killed = true;
      process.SignalGroup(SIGKILL);
    }
    if (hooks.tick) hooks.tick();
    if (process.TryWait(&wait_status)) break;

    pollfd fds[4];
    int n = 0;
    if (process.exit_fd() >= 0) fds[n++] = {process.exit_fd(), POLLIN, 0};
    if (process.stdin_fd() >= 0) fds[n++] = {process.stdin_fd(), POLLOUT, 0};
    if (out_open) fds[n++] = {process.stdout_fd(), POLLIN, 0};
    if (err_open) fds[n++] = {process.stderr_fd(), POLLIN, 0};
    int ready = poll(fds, n, static_cast<int>(absl::ToInt64Milliseconds(options.tick)));
    if (ready < 0 && errno != EINTR) {
      outcome.result = absl::InternalError("poll failed");
      return outcome;
    }
    if (ready <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0 || fds[i].fd == process.exit_fd()) continue;  // TryWait sees it
      if (fds[i].fd == process.stdin_fd()) {
        ssize_t w = write(process.stdin_fd(), stdin_data.data() + written,
                          stdin_data.size() - written);
        if (w > 0) written += w;
        // Done, or the program closed its stdin (EPIPE: SIGPIPE is ignored).
        if (written == stdin_data.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          process.CloseStdin();
        }
      } else if (fds[i].fd == process.stdout_fd()) {
        out_open = reader.ReadStdout(process.stdout_fd());
      } else {
        err_open = reader.ReadStderr(process.stderr_fd());
      }
    }
  }
  // What the program wrote before it exited is still in the pipes.
  if (out_open) reader.ReadStdout(process.stdout_fd());
  if (err_open) reader.ReadStderr(process.stderr_fd());
  reader.Finish();

  if (stopping) {
    outcome.result = absl::CancelledError("the program was stopped");
    return outcome;
  }

  if (const auto& error = reader.error()) {
    // The program's own words, kept within what a job's error may hold: a google.rpc.Code
    // (anything else is UNKNOWN) and a bounded message.
    const int code = error->code() >= 1 && error->code() <= 16
                         ? error->code()
                         : static_cast<int>(absl::StatusCode::kUnknown);
    outcome.result = absl::Status(
        static_cast<absl::StatusCode>(code),
        error->message().empty() ? "the program reported an error"
                                 : ValidUtf8(absl::string_view(error->message())
                                                 .substr(0, kMaxErrorMessage)));
    outcome.retryable = !error->has_retryable() || error->retryable();
    outcome.details = error->details();
    return outcome;
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) {
    if (reader.result()) {
      outcome.result = *reader.result();
    } else {
      google::protobuf::Value null;
      null.set_null_value(google::protobuf::NULL_VALUE);
      outcome.result = null;
    }
    return outcome;
  }
  std::string message = absl::StrCat(options.argv[0], " ", DescribeWaitStatus(wait_status));
  if (std::string tail = reader.StderrTail(); !tail.empty()) {
    absl::StrAppend(&message, "; stderr: ", tail);
  }
  outcome.result = absl::UnknownError(message);
  outcome.retryable = true;
  return outcome;
}

ProgramOutcome RunJobProgram(ProgramOptions options, const std::string& job_id,
                             const std::string& type, int attempt,
                             const google::protobuf::Struct& params,
                             const std::string& output_dir, const ProgramHooks& hooks) {
  std::string input;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(params, &input, print);
  input.push_back('\n');
  options.env["JOBSTREAM_JOB_ID"] = job_id;
  options.env["JOBSTREAM_JOB_TYPE"] = type;
  options.env["JOBSTREAM_ATTEMPT"] = absl::StrCat(attempt);
  if (!output_dir.empty()) options.env["JOBSTREAM_OUTPUT_DIR"] = output_dir;
  return RunProgram(options, input, hooks);
}

}  // namespace jobstream::exec
