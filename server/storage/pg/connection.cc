#include "server/storage/pg/connection.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace jobstream::storage::pg {

namespace {

// Whether libpq can parse `conninfo`; its complaint (never the string, which may hold a
// password) if not.
absl::Status Parse(const std::string& conninfo, absl::string_view what) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (parsed == nullptr) {
    std::string why = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not valid: ", absl::StripAsciiWhitespace(why)));
  }
  PQconninfoFree(parsed);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> PgResult::GetInt64(int row, int col) const {
  int64_t value = 0;
  if (IsNull(row, col) || !absl::SimpleAtoi(Get(row, col), &value)) {
    return absl::InternalError(absl::StrCat("column ", col, " of row ", row,
                                            " is not an integer: \"", Get(row, col), "\""));
  }
  return value;
}

int64_t PgResult::affected() const {
  int64_t n = 0;
  return absl::SimpleAtoi(PQcmdTuples(result_.get()), &n) ? n : 0;
}

absl::Status PgStatus(const PGresult* result, const PGconn* conn, absl::string_view what) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = result != nullptr ? PQresultErrorMessage(result) : "";
  if (message.empty() && conn != nullptr) message = PQerrorMessage(conn);
  message = std::string(absl::StripAsciiWhitespace(message));
  const std::string text = absl::StrCat(what, ": ", message.empty() ? "no answer" : message);
  const absl::string_view code = state != nullptr ? state : "";
  if (code.empty() || absl::StartsWith(code, "08") ||  // no answer, or the connection broke
      code == "57P01" || code == "57P02" || code == "57P03" ||  // shutting down, starting
      (conn != nullptr && PQstatus(conn) != CONNECTION_OK)) {
    return absl::UnavailableError(text);
  }
  if (code == "40001" || code == "40P01") return absl::AbortedError(text);
  if (code == "23505") return absl::AlreadyExistsError(text);
  if (absl::StartsWith(code, "53")) return absl::ResourceExhaustedError(text);
  return absl::InternalError(text);
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::Connect(const std::string& conninfo) {
  if (absl::Status s = Parse(conninfo, "the PostgreSQL connection string"); !s.ok()) return s;
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq could not allocate a connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(absl::StrCat(
        "connecting to PostgreSQL: ", absl::StripAsciiWhitespace(PQerrorMessage(conn))));
    PQfinish(conn);
    return status;
  }
  // Notices ("relation ... already exists, skipping") are not errors: not printed.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<PgConnection>(new PgConnection(conn));
}

PgConnection::~PgConnection() { PQfinish(conn_); }

absl::StatusOr<PgResult> PgConnection::Exec(absl::string_view sql,
                                            const std::vector<PgParam>& params,
                                            bool binary_results) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  values.reserve(params.size());
  for (const PgParam& p : params) {
    values.push_back(p.null ? nullptr : p.value.data());
    lengths.push_back(static_cast<int>(p.value.size()));
    formats.push_back(p.binary ? 1 : 0);
  }
  PGresult* raw = PQexecParams(conn_, std::string(sql).c_str(), static_cast<int>(params.size()),
                               nullptr, values.data(), lengths.data(), formats.data(),
                               binary_results ? 1 : 0);
  const ExecStatusType status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    absl::Status error = PgStatus(raw, conn_, sql.substr(0, sql.find_first_of("(\n")));
    PQclear(raw);
    return error;
  }
  return PgResult(raw);
}

absl::Status PgConnection::ExecScript(absl::string_view sql) {
  PgResult result(PQexec(conn_, std::string(sql).c_str()));
  const ExecStatusType status = result.raw() != nullptr ? PQresultStatus(result.raw())
                                                        : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return absl::OkStatus();
  return PgStatus(result.raw(), conn_, absl::StripAsciiWhitespace(sql.substr(0, 40)));
}

absl::Status ValidatePostgresUrl(const std::string& url) {
  if (!absl::StartsWith(url, "postgresql://") && !absl::StartsWith(url, "postgres://")) {
    return absl::InvalidArgumentError(
        "--store must be \"rocksdb\" or a postgresql:// URL (postgresql://user@host:port/db)");
  }
  return Parse(url, "--store");
}

}  // namespace jobstream::storage::pg
