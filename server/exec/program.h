// RunProgram: one attempt of a program that speaks jobstream's line protocol (see
// ProgramLine in config.proto): params as JSON on stdin, progress and result as JSON lines
// on stdout, the tail of stderr kept for the error. Shared by the server's exec runner and
// `jobstream work`, so a script runs unchanged in either.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobstream/v1/config.pb.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::exec {

struct ProgramOptions {
  std::vector<std::string> argv;           // argv[0]: a path (see ResolveProgram)
  std::map<std::string, std::string> env;  // added to this process's environment
  std::string working_dir;
  absl::Duration kill_grace = absl::Seconds(10);  // SIGTERM, then SIGKILL this long after
  size_t max_line_bytes = 1 << 20;   // longer stdout lines are skipped
  size_t stderr_tail_bytes = 2048;   // kept for the error message
  absl::Duration tick = absl::Milliseconds(100);  // how often hooks are polled
};

struct ProgramHooks {
  // A step/progress line, as a worker would report it.
  std::function<void(const v1::Progress&)> report;
  // Polled every tick; once true, the group gets SIGTERM, then SIGKILL after kill_grace.
  std::function<bool()> stop;
  // Called every tick (a worker heartbeats from here).
  std::function<void()> tick;
  // A line that was skipped, or other trouble worth a log line.
  std::function<void(absl::string_view)> log;
};

struct ProgramOutcome {
  // The result (the last {"result": …} line, or null); CANCELLED if hooks.stop asked the
  // program to stop; otherwise the failure: the program's own {"error": …} line, or its
  // exit status with the stderr tail. FAILED_PRECONDITION if it could not be started.
  absl::StatusOr<google::protobuf::Value> result;
  // For a failure: worth another attempt. True unless the program's error said
  // "retryable": false or it could not be started.
  bool retryable = false;
  // The program's error details, if it gave any.
  google::protobuf::Struct details;
};

// The line protocol on a program's stdout: bytes in, in any pieces; each whole line that
// is a JSON object is a ProgramLine (step/progress reported through hooks, the last result
// and error kept); other lines are plain output, and malformed or over-long ones are
// skipped (logged). Used by RunProgram; apart so it can be fuzzed.
class ProgramOutput {
 public:
  ProgramOutput(const ProgramOptions& options, const ProgramHooks& hooks)
      : options_(options), hooks_(hooks) {}
  void Append(absl::string_view data);
  void Finish();  // the end of stdout: a last line without a newline counts
  const std::optional<google::protobuf::Value>& result() const { return result_; }
  const std::optional<v1::ProgramError>& error() const { return error_; }

 private:
  void Skip(absl::string_view why);
  void HandleLine(absl::string_view raw);

  const ProgramOptions& options_;
  const ProgramHooks& hooks_;
  std::string line_;
  bool skipping_ = false;
  int skipped_ = 0;
  std::optional<google::protobuf::Value> result_;
  std::optional<v1::ProgramError> error_;
};

// Runs the program to its end.
ProgramOutcome RunProgram(const ProgramOptions& options, const std::string& stdin_data,
                          const ProgramHooks& hooks);

// Runs the program for one attempt of a job, as the exec runner and `jobstream work` both
// do: the params as one line of JSON on stdin, and JOBSTREAM_JOB_ID, JOBSTREAM_JOB_TYPE,
// JOBSTREAM_ATTEMPT and (unless empty) JOBSTREAM_OUTPUT_DIR in its environment.
ProgramOutcome RunJobProgram(ProgramOptions options, const std::string& job_id,
                             const std::string& type, int attempt,
                             const google::protobuf::Struct& params,
                             const std::string& output_dir, const ProgramHooks& hooks);

// The environment a program gets: ours, then `extra` (later keys win), as KEY=VALUE.
std::vector<std::string> ProgramEnvironment(const std::map<std::string, std::string>& extra);

}  // namespace jobstream::exec
