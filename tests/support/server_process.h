// ServerProcess: runs the real jobstream-server binary on 127.0.0.1 with a free port and
// a data dir, reads its "listening on" line, and stops it (SIGTERM or SIGKILL).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"

namespace jobstream::testing {

class ServerProcess {
 public:
  // Starts the server; extra_flags are appended to --listen and --data_dir.
  explicit ServerProcess(std::string data_dir, std::vector<std::string> extra_flags = {});
  ~ServerProcess();  // SIGKILL if still running

  const std::string& address() const { return address_; }
  // The port /metrics is served on, when the flags ask for "--metrics_listen=127.0.0.1:0"
  // (the server picks it: no race for a free port); else 0.
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  std::shared_ptr<grpc::Channel> Channel() const;

  // Sends `signal` and waits; returns the exit status as waitpid reports it.
  int Stop(int signal = SIGTERM);
  void Kill() { Stop(SIGKILL); }

 private:
  pid_t pid_ = -1;
  std::string address_;
  int metrics_port_ = 0;
};

// The path of a built binary, from the JOBSTREAM_BIN_DIR compile definition.
std::string BinaryPath(const std::string& name);

}  // namespace jobstream::testing
