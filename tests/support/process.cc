#include "tests/support/process.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace jobstream::testing {

Listening SpawnListening(const std::vector<std::string>& argv, int more_lines) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  Listening child;
  child.pid = fork();
  if (child.pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  for (int i = 0; i < more_lines; ++i) {
    std::string more;
    while (read(out[0], &c, 1) == 1 && c != '\n') more.push_back(c);
    child.more_lines.push_back(std::move(more));
  }
  close(out[0]);
  const std::string prefix = "listening on ";
  if (line.rfind(prefix, 0) != 0) {
    StopProcess(child.pid, SIGKILL);
    throw std::runtime_error(argv[0] + " did not start: \"" + line + "\"");
  }
  child.address = line.substr(prefix.size());
  return child;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, const std::string& user) {
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  const passwd* pw = !user.empty() && geteuid() == 0 ? getpwnam(user.c_str()) : nullptr;
  const pid_t pid = fork();
  if (pid == 0) {
    if (!user.empty()) setpgid(0, 0);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    if (pw != nullptr && (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)) _exit(126);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int StopProcess(pid_t pid, int signal) {
  if (pid <= 0) return -1;
  kill(pid, signal);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

std::pair<int, std::string> RunCommand(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

}  // namespace jobstream::testing
