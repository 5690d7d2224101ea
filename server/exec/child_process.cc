#include "server/exec/child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace jobstream::exec {
namespace {

// Signal that tells the supervisor its parent thread died (PR_SET_PDEATHSIG).
constexpr int kParentDied = SIGUSR1;

void KillGroupAndExit(int) {
  kill(0, SIGKILL);  // our whole group, us included
  _exit(137);
}

// Closes every descriptor from 3 up except those in `keep`.
void CloseAllExcept(int* keep, int n) {
  std::sort(keep, keep + n);  // async-signal-safe: no allocation
  int from = 3;
  for (int i = 0; i < n; ++i) {
    if (keep[i] > from) close_range(from, keep[i] - 1, 0);
    if (keep[i] >= from) from = keep[i] + 1;
  }
  close_range(from, ~0U, 0);
}

void ResetSignals() {
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Runs in the forked supervisor: async-signal-safe calls only (we were forked from a
// multi-threaded process). Never returns.
[[noreturn]] void Supervise(pid_t parent, int in[2], int out[2], int err[2], int exec_err[2],
                            char* const* argv, char* const* envp, const char* dir) {
  // We hold nothing of the parent's: not its sockets or files, and not our ends of the
  // pipes (the program would never see EOF on stdin).
  close(in[1]);
  close(out[0]);
  close(err[0]);
  close(exec_err[0]);
  int keep[] = {in[0], out[1], err[1], exec_err[1]};
  CloseAllExcept(keep, 4);
  setpgid(0, 0);
  struct sigaction on_parent_death = {};
  on_parent_death.sa_handler = KillGroupAndExit;
  sigaction(kParentDied, &on_parent_death, nullptr);
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ignore, nullptr);  // cancel signals the group; the program decides
  sigaction(SIGINT, &ignore, nullptr);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, kParentDied);
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  prctl(PR_SET_PDEATHSIG, kParentDied);
  if (getppid() != parent) KillGroupAndExit(0);  // the parent died before prctl

  const pid_t program = fork();
  if (program < 0) _exit(126);
  if (program == 0) {
    ResetSignals();
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    // Only the exec error pipe (close-on-exec) stays open past stdio.
    int keep[] = {exec_err[1]};
    CloseAllExcept(keep, 1);
    if (dir != nullptr && chdir(dir) != 0) {
      int e = errno;
      (void)!write(exec_err[1], &e, sizeof e);
      _exit(127);
    }
    execve(argv[0], argv, envp);
    int e = errno;
    (void)!write(exec_err[1], &e, sizeof e);
    _exit(127);
  }
  // Only the pipes' far ends matter to the program; ours would hold them open.
  close(in[0]);
  close(out[1]);
  close(err[1]);
  close(exec_err[1]);
  int status = 0;
  while (waitpid(program, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  const int sig = WTERMSIG(status);
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, nullptr);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  sigprocmask(SIG_UNBLOCK, &only, nullptr);
  kill(getpid(), sig);  // die as the program died
  _exit(128 + sig);
}

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

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("no program to run");
  // Everything the forked side needs is prepared here: it may not allocate.
  std::vector<char*> argv, envp;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const char* dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();

  int in[2], out[2], err[2], exec_err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
      pipe2(exec_err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe failed: ", strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    for (int* p : {in, out, err, exec_err}) {
      close(p[0]);
      close(p[1]);
    }
    return absl::ResourceExhaustedError(absl::StrCat("fork failed: ", strerror(errno)));
  }
  if (pid == 0) Supervise(parent, in, out, err, exec_err, argv.data(), envp.data(), dir);
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
