// The supervisor that sits between us and a program (see child_process.h). It runs either
// in jobstream-supervisor, a small program of its own started with posix_spawn, or, when
// that program is not installed, in a forked copy of our own process. The small program is
// the fast way: forking a large multi-threaded process copies its page tables, and while
// the copy lives every page either side writes costs a fault (measured: most of the CPU of
// `jobstream work` running short programs).
#pragma once

#include <sys/types.h>

namespace jobstream::exec {

// The supervisor's file descriptors: 0-2 are the program's stdin, stdout and stderr, and
// this one carries execve's errno back to us if the program cannot start.
inline constexpr int kExecErrorFd = 3;

// Leads a process group, kills it when `parent` dies, runs the program (in `dir` unless
// null) and exits as it exited. Makes async-signal-safe calls only (it may run in a copy
// of a multi-threaded process). Never returns.
[[noreturn]] void Supervise(pid_t parent, const char* dir, char* const* argv,
                            char* const* envp);

}  // namespace jobstream::exec
