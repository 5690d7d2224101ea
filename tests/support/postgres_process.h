// A PostgreSQL 15 server of the tests' own (Debian's postgresql-15): initdb in a temp dir
// (as the postgres user when run as root, since initdb refuses root), listening on a free
// loopback port and a socket in that dir, with an empty database "jobstream". Stopped
// with a fast shutdown and its dir removed when the object goes.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/temp_dir.h"

namespace jobstream::testing {

class PostgresProcess {
 public:
  // Whether the binaries are installed; tests skip, saying so, where they are not.
  static bool Available();

  PostgresProcess() = default;
  ~PostgresProcess();
  PostgresProcess(const PostgresProcess&) = delete;
  PostgresProcess& operator=(const PostgresProcess&) = delete;

  // initdb, start, and create the database; once per object.
  absl::Status Start();
  // Stops it (SIGINT: fast shutdown, SIGKILL: a crash) and starts it again on the same
  // port and data.
  absl::Status Restart(int signal = SIGINT);
  // Stops it and waits; safe to call twice.
  void Stop(int signal = SIGINT);

  // postgresql://postgres@127.0.0.1:PORT/jobstream
  std::string url() const;
  // A new, empty database (t0, t1, ...); its URL.
  absl::StatusOr<std::string> NewDatabase();
  int port() const { return port_; }

 private:
  absl::Status Launch();  // starts the server on data_ and waits until it answers
  absl::Status CreateDatabase(const std::string& name);

  TempDir dir_;
  std::string data_;
  int port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;  // made by NewDatabase
};

}  // namespace jobstream::testing
