// A bench's --postgres: a PostgreSQL of its own, and the server flags that put the store
// there. A bench whose store cannot start says why and fails rather than measure another.
#pragma once

#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/support/postgres_process.h"

namespace jobstream::bench {

// Starts `pg` with a fresh database and adds --store and --server_id to `server_argv`;
// false (having said why on stderr) if PostgreSQL could not start.
inline bool UsePostgres(testing::PostgresProcess& pg, std::vector<std::string>& server_argv) {
  absl::StatusOr<std::string> url =
      pg.Start().ok() ? pg.NewDatabase() : absl::UnavailableError("PostgreSQL");
  if (!url.ok()) {
    std::cerr << "PostgreSQL could not be started: " << url.status() << "\n";
    return false;
  }
  server_argv.push_back("--store=" + *url);
  server_argv.push_back("--server_id=bench");
  return true;
}

}  // namespace jobstream::bench
