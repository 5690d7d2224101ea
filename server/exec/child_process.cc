#include "server/exec/child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/exec/supervise.h"

namespace jobstream::exec {
namespace {

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

absl::StatusOr<std::string> ResolveProgram(const std::string& program) {
  if (program.empty()) return absl::InvalidArgumentError("the program is empty");
  auto check = [](const std::string& path) -> absl::Status {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("\"", path, "\" does not exist"));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("\"", path, "\" is not a file"));
    }
    if (access(path.c_str(), X_OK) != 0) {
      return absl::PermissionDeniedError(absl::StrCat("\"", path, "\" is not executable"));
    }
    return absl::OkStatus();
  };
  if (program.find('/') != std::string::npos) {
    std::string path = program;
    if (path[0] != '/') {
      char cwd[4096];
      if (getcwd(cwd, sizeof cwd) == nullptr) return absl::InternalError("getcwd failed");
      path = absl::StrCat(cwd, "/", path);
    }
    if (absl::Status s = check(path); !s.ok()) return s;
    return path;
  }
  const char* env_path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(env_path ? env_path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string path = absl::StrCat(dir, "/", program);
    if (check(path).ok()) return path;
  }
  return absl::NotFoundError(absl::StrCat("\"", program, "\" is not in PATH"));
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return absl::StrCat("killed by signal ", sig, " (", strsignal(sig), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

std::string SupervisorPath() {
  if (const char* path = std::getenv("JOBSTREAM_SUPERVISOR")) return path;
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self);
  if (n <= 0 || n == sizeof self) return "";
  std::string path(self, static_cast<size_t>(n));
  path.resize(path.rfind('/') + 1);
  path += "jobstream-supervisor";
  return access(path.c_str(), X_OK) == 0 ? path : "";
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("no program to run");
  const std::string supervisor = SupervisorPath();
  const std::string parent = std::to_string(getpid());
  // Everything the forked side needs is prepared here: it may not allocate.
  std::vector<char*> argv, envp;
  if (!supervisor.empty()) {
    for (const std::string* a : {&supervisor, &parent, &options.working_dir}) {
      argv.push_back(const_cast<char*>(a->c_str()));
    }
  }
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  // stdin, stdout, stderr and the exec error pipe, each {read end, write end}; all
  // close-on-exec, and above 3 so that putting the supervisor's 0-3 in place cannot
  // overwrite one of them.
  int pipes[4][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
  auto close_pipes = [&pipes] {
    for (int* p : pipes) {
      for (int side = 0; side < 2; ++side) {
        if (p[side] >= 0) close(p[side]);
      }
    }
  };
  int pipe_errno = 0;
  for (int* p : pipes) {
    if (pipe2(p, O_CLOEXEC) != 0) pipe_errno = errno;
    for (int side = 0; side < 2 && pipe_errno == 0; ++side) {
      if (p[side] > kExecErrorFd) continue;
      const int moved = fcntl(p[side], F_DUPFD_CLOEXEC, kExecErrorFd + 1);
      if (moved < 0) pipe_errno = errno;
      close(p[side]);
      p[side] = moved;
    }
    if (pipe_errno != 0) break;
  }
  if (pipe_errno != 0) {
    close_pipes();
    return absl::ResourceExhaustedError(absl::StrCat("cannot make a pipe: ", strerror(pipe_errno)));
  }
  int (&in)[2] = pipes[0];
  int (&out)[2] = pipes[1];
  int (&err)[2] = pipes[2];
  int (&exec_err)[2] = pipes[3];
  const int stdio[] = {in[0], out[1], err[1], exec_err[1]};  // the supervisor's 0-3

  pid_t pid = -1;
  if (!supervisor.empty()) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    for (int fd = 0; fd <= kExecErrorFd; ++fd) {
      posix_spawn_file_actions_adddup2(&actions, stdio[fd], fd);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETPGROUP);
    const int e = posix_spawn(&pid, supervisor.c_str(), &actions, &attr, argv.data(),
                              envp.data());
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (e != 0) {
      close_pipes();
      return absl::FailedPreconditionError(
          absl::StrCat("cannot start the supervisor ", supervisor, ": ", strerror(e)));
    }
  } else {
    const char* dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
    const pid_t parent_pid = getpid();
    pid = fork();
    if (pid < 0) {
      const int e = errno;
      close_pipes();
      return absl::ResourceExhaustedError(absl::StrCat("fork failed: ", strerror(e)));
    }
    if (pid == 0) {
      for (int fd = 0; fd <= kExecErrorFd; ++fd) dup2(stdio[fd], fd);
      Supervise(parent_pid, dir, argv.data(), envp.data());
    }
  }
  // Also set here: whichever of us runs first, the group exists before we signal it.
  setpgid(pid, pid);

  auto child = std::unique_ptr<ChildProcess>(new ChildProcess());
  child->group_ = pid;
  close(in[0]);
  close(out[1]);
  close(err[1]);
  close(exec_err[1]);
  child->stdin_fd_ = in[1];
  child->stdout_fd_ = out[0];
  child->stderr_fd_ = err[0];
  for (int fd : {child->stdin_fd_, child->stdout_fd_, child->stderr_fd_}) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  // So that the end of the program wakes a poll at once (Linux 5.3+).
  child->exit_fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  // The exec error pipe closes on a successful execve, or carries errno.
  int exec_errno = 0;
  ssize_t n;
  while ((n = read(exec_err[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  close(exec_err[0]);
  if (n == sizeof exec_errno) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", options.argv[0],
        options.working_dir.empty() ? "" : absl::StrCat(" in ", options.working_dir), ": ",
        strerror(exec_errno)));  // the destructor reaps the supervisor
  }
  return child;
}

void ChildProcess::CloseStdin() { CloseFd(stdin_fd_); }

void ChildProcess::SignalGroup(int signal) {
  if (group_ > 0) kill(-group_, signal);
}

bool ChildProcess::TryWait(int* status) {
  if (reaped_) return true;
  // Look without reaping: while the supervisor is a zombie its pid (the group's id) cannot
  // be reused, so killing what the program left behind in its group is safe.
  siginfo_t info = {};
  if (waitid(P_PID, group_, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return false;
  }
  kill(-group_, SIGKILL);
  while (waitpid(group_, status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return true;
}

ChildProcess::~ChildProcess() {
  CloseFd(exit_fd_);
  CloseFd(stdin_fd_);
  CloseFd(stdout_fd_);
  CloseFd(stderr_fd_);
  if (!reaped_ && group_ > 0) {
    kill(-group_, SIGKILL);
    kill(group_, SIGKILL);
    int status;
    while (waitpid(group_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

}  // namespace jobstream::exec
