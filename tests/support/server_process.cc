#include "tests/support/server_process.h"

#include <algorithm>
#include <cstdlib>

#include "tests/support/process.h"

namespace jobstream::testing {

std::string BinaryPath(const std::string& name) {
  return std::string(JOBSTREAM_BIN_DIR) + "/" + name;
}

ServerProcess::ServerProcess(std::string data_dir, std::vector<std::string> extra_flags) {
  std::vector<std::string> args = {BinaryPath("server/jobstream-server"),
                                   "--listen=127.0.0.1:0", "--data_dir=" + data_dir};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  // A test never takes the fixed default metrics port: a second server, or one running on
  // this machine, would have it.
  if (std::none_of(extra_flags.begin(), extra_flags.end(), [](const std::string& f) {
        return f.rfind("--metrics_listen", 0) == 0;
      })) {
    args.push_back("--metrics_listen=off");
  }
  const bool metrics_picked =
      std::find(extra_flags.begin(), extra_flags.end(), "--metrics_listen=127.0.0.1:0") !=
      extra_flags.end();
  Listening child = SpawnListening(args, metrics_picked ? 1 : 0);
  pid_ = child.pid;
  address_ = child.address;
  if (metrics_picked && !child.more_lines.empty()) {
    const std::string& line = child.more_lines[0];  // "metrics on HOST:PORT"
    metrics_port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Stop(SIGKILL);
}

std::shared_ptr<grpc::Channel> ServerProcess::Channel() const {
  return grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
}

int ServerProcess::Stop(int signal) {
  const int status = StopProcess(pid_, signal);
  pid_ = -1;
  return status;
}

}  // namespace jobstream::testing
