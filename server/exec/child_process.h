// ChildProcess: runs a program in a process group of its own, with pipes for stdin,
// stdout and stderr, so that it and every process it forks can be signalled together.
//
// Between us and the program sits a small supervisor (supervise.h): it leads the group,
// asks the kernel to signal it when its parent thread dies, and then kills the whole
// group. So a program whose server (or `jobstream work`) was killed with SIGKILL does not
// keep running. The supervisor ignores SIGTERM, exits with the program's exit code, and
// dies of the program's signal. It is the program jobstream-supervisor, at
// $JOBSTREAM_SUPERVISOR if that is set or else beside our own executable; where there is
// none (or $JOBSTREAM_SUPERVISOR is empty), a forked copy of this process, which costs
// more CPU.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace jobstream::exec {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the program's path
  std::vector<std::string> env;   // the whole environment, as KEY=VALUE
  std::string working_dir;        // empty: ours
};

// The supervisor program Spawn starts, or "" for a forked copy of this process.
std::string SupervisorPath();

class ChildProcess {
 public:
  // Starts the program. Fails if it cannot be started at all (e.g. execve failed: the
  // error says why).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const SpawnOptions& options);
  // Kills the group if it is still running and reaps the supervisor.
  ~ChildProcess();

  // Our ends of the pipes, non-blocking; -1 once closed.
  int stdin_fd() const { return stdin_fd_; }
  int stdout_fd() const { return stdout_fd_; }
  int stderr_fd() const { return stderr_fd_; }
  void CloseStdin();

  // Sends `signal` to every process of the group (the supervisor ignores SIGTERM).
  void SignalGroup(int signal);
  // Reaps the supervisor if it has exited; true then, with the program's wait status in
  // *status (exit code, or death by signal).
  bool TryWait(int* status);
  // Readable (for poll) once the supervisor has exited; -1 if the kernel has no pidfd.
  int exit_fd() const { return exit_fd_; }
  pid_t group() const { return group_; }

 private:
  ChildProcess() = default;
  pid_t group_ = -1;  // the supervisor's pid, which is the group's id
  bool reaped_ = false;
  int stdin_fd_ = -1, stdout_fd_ = -1, stderr_fd_ = -1;
  int exit_fd_ = -1;
};

// "exited with status 3", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

// Finds `program` as execvp would (a name with no '/' is looked up in PATH); returns an
// absolute path of an executable regular file, or why there is none.
absl::StatusOr<std::string> ResolveProgram(const std::string& program);

}  // namespace jobstream::exec
