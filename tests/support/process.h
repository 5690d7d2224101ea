// Child processes for tests and the bench: start a binary that prints
// "listening on HOST:PORT" as its first line, or run a command to its end.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace jobstream::testing {

struct Listening {
  pid_t pid = -1;
  std::string address;  // HOST:PORT from its first line
  std::vector<std::string> more_lines;  // the next `more_lines` lines asked for
};

// Runs argv (argv[0] a path) with stdout piped and waits for its "listening on" line.
// Throws std::runtime_error, after killing it, if the first line is anything else.
Listening SpawnListening(const std::vector<std::string>& argv, int more_lines = 0);

// Starts argv (argv[0] a path) with stdout and stderr appended to `log`; returns its pid.
// With `user` (and the caller root), it runs as that user, in a process group of its own
// (so a SIGKILL to -pid takes its children too).
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log,
            const std::string& user = "");

// Sends `signal` to pid and waits; returns the wait status.
int StopProcess(pid_t pid, int signal);

// Runs a shell command to its end: (exit code, or -1 if killed; its stdout).
std::pair<int, std::string> RunCommand(const std::string& command);

}  // namespace jobstream::testing
