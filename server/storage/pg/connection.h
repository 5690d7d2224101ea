// PgConnection: one libpq connection and the calls the PostgreSQL store makes on it —
// statements with parameters (text, or binary for bytea), answered as absl statuses that
// say what failed: a connection lost or a server shutting down is UNAVAILABLE (try
// again), a serialization failure or deadlock ABORTED (retry the transaction), a unique
// key taken ALREADY_EXISTS, a full disk RESOURCE_EXHAUSTED, anything else INTERNAL.
// Not thread-safe: one thread uses a connection at a time (the pool hands them out).
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jobstream::storage::pg {

// A statement's answer: rows of columns, each text (or binary, for bytea asked that way).
class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result, &PQclear) {}
  int rows() const { return PQntuples(result_.get()); }
  bool IsNull(int row, int col) const { return PQgetisnull(result_.get(), row, col) != 0; }
  absl::string_view Get(int row, int col) const {
    return absl::string_view(PQgetvalue(result_.get(), row, col),
                             static_cast<size_t>(PQgetlength(result_.get(), row, col)));
  }
  // A text column holding an integer (INTERNAL if it does not).
  absl::StatusOr<int64_t> GetInt64(int row, int col) const;
  // The number of rows an INSERT, UPDATE or DELETE touched.
  int64_t affected() const;
  const PGresult* raw() const { return result_.get(); }

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> result_;
};

// One parameter: text, binary (bytea), or SQL NULL.
struct PgParam {
  static PgParam Text(std::string value) { return {std::move(value), false, false}; }
  static PgParam Binary(std::string value) { return {std::move(value), true, false}; }
  static PgParam Int(int64_t value) { return {std::to_string(value), false, false}; }
  static PgParam Null() { return {{}, false, true}; }
  std::string value;
  bool binary = false;
  bool null = false;
};

// The status for a failed statement or connection, from its SQLSTATE; `what` says what
// was being done.
absl::Status PgStatus(const PGresult* result, const PGconn* conn, absl::string_view what);

class PgConnection {
 public:
  // Connects with a libpq URI (postgresql://user@host:port/db?...) or key=value string.
  // INVALID_ARGUMENT for one libpq cannot parse, UNAVAILABLE when the server cannot be
  // reached.
  static absl::StatusOr<std::unique_ptr<PgConnection>> Connect(const std::string& conninfo);
  ~PgConnection();

  // Runs one statement. Columns come back as text, or all as binary if `binary_results`.
  // Statements deferred before it go first, in the same round trip.
  absl::StatusOr<PgResult> Exec(absl::string_view sql, const std::vector<PgParam>& params = {},
                                bool binary_results = false);
  // A statement whose answer nobody waits for: sent with the next Exec or Flush, all of
  // them at once in libpq's pipeline mode, so a transaction's writes and its COMMIT cost
  // one round trip. Its error is the error of that Exec or Flush.
  void Defer(std::string sql, std::vector<PgParam> params = {});
  // Sends what was deferred and waits for its answers.
  absl::Status Flush();
  // Forgets what was deferred (a transaction given up before it was sent).
  void DropDeferred() { deferred_.clear(); }
  // Runs statements without parameters, several if separated by semicolons (a schema
  // step, BEGIN, COMMIT).
  absl::Status ExecScript(absl::string_view sql);
  // Whether the connection still works (false after the server went away).
  bool ok() const { return !broken_ && PQstatus(conn_) == CONNECTION_OK; }
  PGconn* raw() { return conn_; }

 private:
  struct Statement {
    std::string sql;
    std::vector<PgParam> params;
  };
  explicit PgConnection(PGconn* conn) : conn_(conn) {}
  // Sends the deferred statements and then `last` (if not null; not copied) in one
  // pipeline; `last`'s result, or the first error.
  absl::StatusOr<std::optional<PgResult>> RunPipeline(const std::string* last_sql,
                                                      const std::vector<PgParam>* last_params,
                                                      bool binary_results);
  // The name of `sql`'s prepared statement on this connection, or null to send it
  // unnamed (parsed and planned each time); `prepare` says it must be prepared first.
  // PostgreSQL then parses it once per connection, and plans it once when its generic
  // plan costs no more than planning each time would: for statements this small,
  // parsing and planning were a third of PostgreSQL's work (bench/RESULTS.md). A
  // generic plan made while a table is young is made again once autovacuum analyzes it.
  static constexpr size_t kMaxPrepared = 64;
  static constexpr size_t kMaxPreparedParams = 32;
  const std::string* PreparedName(const std::string& sql, size_t params, bool* prepare);
  PGconn* conn_;
  std::vector<Statement> deferred_;
  absl::flat_hash_map<std::string, std::string> prepared_;  // by SQL text
  int64_t prepared_count_ = 0;  // names are never reused
  bool broken_ = false;  // a pipeline left in a state the next user cannot trust
};

// Checks a --store value names PostgreSQL and that libpq can parse it; the message says
// what is wrong without echoing a password.
absl::Status ValidatePostgresUrl(const std::string& url);

}  // namespace jobstream::storage::pg
