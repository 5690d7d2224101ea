// A PostgreSQL 15 server of the tests' own (Debian's postgresql-15): initdb in a temp dir
// (as the postgres user when run as root, since initdb refuses root), listening on a free
// loopback port and a socket in that dir, with an empty database "jobstream". Stopped
// with a fast shutdown and its dir removed when the object goes.
//
// Shared() is the one a ctest run starts for all its tests (tests/support/shared_postgres.sh),
// on which each test makes databases of its own; a test that restarts or crashes
// PostgreSQL starts a private one instead.
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

  // `durable`: fsync on, as a deployment runs it (benchmarks). Tests turn it off: they
  // crash processes, never the machine, so fsync changes nothing they can observe.
  explicit PostgresProcess(bool durable = true) : durable_(durable) {}
  ~PostgresProcess();
  PostgresProcess(const PostgresProcess&) = delete;
  PostgresProcess& operator=(const PostgresProcess&) = delete;

  // The server this test process's tests share: the ctest run's, when its fixture file is
  // named by $JOBSTREAM_TEST_POSTGRES (an error if the fixture failed to start it), or else
  // one of this process's own, started at the first call. Null where PostgreSQL 15 is not
  // installed (tests skip). Neither restarted nor stopped by tests.
  static absl::StatusOr<PostgresProcess*> Shared();

  // initdb, start, and create the database; once per object.
  absl::Status Start();
  // Stops it (SIGINT: fast shutdown, SIGKILL: a crash) and starts it again on the same
  // port and data.
  absl::Status Restart(int signal = SIGINT);
  // Stops it and waits; safe to call twice.
  void Stop(int signal = SIGINT);

  // postgresql://postgres@127.0.0.1:PORT/jobstream
  std::string url() const;
  // A new, empty database, named for this process (several share one server); its URL.
  absl::StatusOr<std::string> NewDatabase();
  // Drops a database NewDatabase made, closing its connections; best effort.
  void DropDatabase(const std::string& url);
  int port() const { return port_; }

 private:
  absl::Status Launch();  // starts the server on data_ and waits until it answers
  absl::Status CreateDatabase(const std::string& name);

  bool durable_ = true;
  bool attached_ = false;  // another process's server (Shared): never restarted or stopped
  TempDir dir_;
  std::string data_;
  int port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;  // made by NewDatabase
};

}  // namespace jobstream::testing
