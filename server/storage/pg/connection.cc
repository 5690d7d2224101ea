#include "server/storage/pg/connection.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace jobstream::storage::pg {

namespace {

// Whether libpq can parse `conninfo`; its complaint (never the string, which may hold a
// password) if not.
absl::Status CheckConninfo(const std::string& conninfo, absl::string_view what) {
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
  if (absl::Status s = CheckConninfo(conninfo, "the PostgreSQL connection string"); !s.ok()) return s;
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

namespace {

// libpq's view of `params`: pointers into them, so they must outlive the call.
struct Arguments {
  explicit Arguments(const std::vector<PgParam>& params) {
    values.reserve(params.size());
    for (const PgParam& p : params) {
      values.push_back(p.null ? nullptr : p.value.data());
      lengths.push_back(static_cast<int>(p.value.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
  }
  int size() const { return static_cast<int>(values.size()); }
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
};

// What a statement is called in an error: its first words.
absl::string_view Named(absl::string_view sql) { return sql.substr(0, sql.find_first_of("(\n")); }

}  // namespace

void PgConnection::Defer(std::string sql, std::vector<PgParam> params) {
  deferred_.push_back({std::move(sql), std::move(params)});
}

absl::Status PgConnection::Flush() {
  if (deferred_.empty()) return absl::OkStatus();
  return RunPipeline(nullptr, nullptr, false).status();
}

const std::string* PgConnection::PreparedName(const std::string& sql, size_t params,
                                              bool* prepare) {
  *prepare = false;
  // Statements without parameters are few and cheap (BEGIN, COMMIT); those with many are
  // the batches built for their size, each different.
  if (params == 0 || params > kMaxPreparedParams) return nullptr;
  if (auto it = prepared_.find(sql); it != prepared_.end()) return &it->second;
  if (prepared_.size() >= kMaxPrepared) return nullptr;
  *prepare = true;
  return &prepared_.emplace(sql, absl::StrCat("js", ++prepared_count_)).first->second;
}

absl::StatusOr<std::optional<PgResult>> PgConnection::RunPipeline(
    const std::string* last_sql, const std::vector<PgParam>* last_params, bool binary_results) {
  std::vector<Statement> statements = std::move(deferred_);
  deferred_.clear();
  const bool has_last = last_sql != nullptr;
  const size_t count = statements.size() + (has_last ? 1 : 0);
  auto sql_at = [&](size_t i) -> const std::string& {
    return i < statements.size() ? statements[i].sql : *last_sql;
  };
  auto params_at = [&](size_t i) -> const std::vector<PgParam>& {
    return i < statements.size() ? statements[i].params : *last_params;
  };
  auto lost = [&](absl::string_view what) {
    broken_ = true;  // whatever is left unread would answer the next user
    return PgStatus(nullptr, conn_, what);
  };
  // What was sent, in order: each statement, after its preparation if it is the first
  // use of its text on this connection.
  struct Sent {
    size_t statement;
    bool prepare;
  };
  std::vector<Sent> sent;
  sent.reserve(count + 4);
  if (PQenterPipelineMode(conn_) != 1) return lost("entering pipeline mode");
  for (size_t i = 0; i < count; ++i) {
    Arguments args(params_at(i));
    const bool binary = i + 1 == count && has_last && binary_results;
    bool prepare = false;
    const std::string* name = PreparedName(sql_at(i), args.values.size(), &prepare);
    if (prepare) {
      if (PQsendPrepare(conn_, name->c_str(), sql_at(i).c_str(), args.size(), nullptr) != 1) {
        return lost(Named(sql_at(i)));
      }
      sent.push_back({i, true});
    }
    const int ok = name != nullptr
                       ? PQsendQueryPrepared(conn_, name->c_str(), args.size(), args.values.data(),
                                             args.lengths.data(), args.formats.data(),
                                             binary ? 1 : 0)
                       : PQsendQueryParams(conn_, sql_at(i).c_str(), args.size(), nullptr,
                                           args.values.data(), args.lengths.data(),
                                           args.formats.data(), binary ? 1 : 0);
    if (ok != 1) return lost(Named(sql_at(i)));
    sent.push_back({i, false});
  }
  if (PQpipelineSync(conn_) != 1) return lost("sending a pipeline");
  // Each command's results end with a null; an error skips the rest (ABORTED) until the
  // sync point, which ends the pipeline.
  absl::Status error;
  std::optional<PgResult> result;
  for (const Sent& s : sent) {
    bool done = false;
    for (PGresult* raw; (raw = PQgetResult(conn_)) != nullptr;) {
      PgResult got(raw);
      const ExecStatusType status = PQresultStatus(raw);
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        done = true;
        if (!s.prepare && s.statement + 1 == count && has_last) result.emplace(std::move(got));
      } else if (status != PGRES_PIPELINE_ABORTED && error.ok()) {
        error = PgStatus(raw, conn_, Named(sql_at(s.statement)));
      }
    }
    if (s.prepare && !done) prepared_.erase(sql_at(s.statement));  // not prepared after all
    if (PQstatus(conn_) != CONNECTION_OK) return lost(Named(sql_at(s.statement)));
  }
  PGresult* sync = PQgetResult(conn_);
  const bool synced = sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced || PQexitPipelineMode(conn_) != 1) return lost("ending a pipeline");
  if (!error.ok()) return error;
  return result;
}

absl::StatusOr<PgResult> PgConnection::Exec(absl::string_view sql,
                                            const std::vector<PgParam>& params,
                                            bool binary_results) {
  // One statement goes as a pipeline of one too: its preparation, if it needs one, then
  // goes in the same round trip.
  const std::string last_sql(sql);
  auto result = RunPipeline(&last_sql, &params, binary_results);
  if (!result.ok()) return result.status();
  if (!result->has_value()) return absl::InternalError(absl::StrCat(Named(sql), ": no result"));
  return **std::move(result);
}

absl::Status PgConnection::ExecScript(absl::string_view sql) {
  if (absl::Status s = Flush(); !s.ok()) return s;
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
  return CheckConninfo(url, "--store");
}

}  // namespace jobstream::storage::pg
