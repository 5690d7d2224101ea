#include "server/exec/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace jobstream::exec {
namespace {

// Signal that tells the supervisor its parent thread died (PR_SET_PDEATHSIG).
constexpr int kParentDied = SIGUSR1;

void KillGroupAndExit(int) {
  kill(0, SIGKILL);  // our whole group, us included
  _exit(137);
}

void ResetSignals() {
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void FailExec(int e) {
  (void)!write(kExecErrorFd, &e, sizeof e);
  _exit(127);
}

}  // namespace

void Supervise(pid_t parent, const char* dir, char* const* argv, char* const* envp) {
  // We hold nothing of the parent's (its sockets, files, or our ends of the pipes: the
  // program would never see EOF on stdin); the exec error pipe closes when execve works.
  close_range(kExecErrorFd + 1, ~0U, 0);
  fcntl(kExecErrorFd, F_SETFD, FD_CLOEXEC);
  setpgid(0, 0);  // done by whoever started us as well: the group exists before it is signalled
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
  if (program < 0) FailExec(errno);
  if (program == 0) {
    ResetSignals();
    if (dir != nullptr && chdir(dir) != 0) FailExec(errno);
    execve(argv[0], argv, envp);
    FailExec(errno);
  }
  // Only the program's copies of the pipes matter; ours would hold them open.
  for (int fd = 0; fd <= kExecErrorFd; ++fd) close(fd);
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

}  // namespace jobstream::exec
