// jobstream-supervisor PARENT_PID DIR PROGRAM [ARG]...
//
// Started by jobstream-server and `jobstream work` (ChildProcess) to run a program in a
// process group that dies with them; not meant to be run by hand. Its stdin, stdout and
// stderr are the program's; descriptor 3 reports a failed execve. DIR is the program's
// working directory, or empty for ours. The environment is passed on as it is.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "server/exec/supervise.h"

int main(int argc, char** argv) {
  char* end = nullptr;
  const long parent = argc >= 4 ? strtol(argv[1], &end, 10) : 0;
  if (argc < 4 || end == argv[1] || *end != '\0' || parent <= 1 ||
      fcntl(jobstream::exec::kExecErrorFd, F_GETFD) < 0) {
    fprintf(stderr,
            "jobstream-supervisor runs a program for jobstream-server and `jobstream work`;\n"
            "it is started by them, not by hand.\n"
            "usage: jobstream-supervisor PARENT_PID DIR PROGRAM [ARG]... (descriptor 3 open)\n");
    return 2;
  }
  jobstream::exec::Supervise(static_cast<pid_t>(parent), argv[2][0] != '\0' ? argv[2] : nullptr,
                             argv + 3, environ);
}
