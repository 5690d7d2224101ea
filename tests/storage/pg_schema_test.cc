// The PostgreSQL store's connection and schema, against a real PostgreSQL 15 started for
// the suite (tests/support/postgres_process.h): statuses that say what failed, and a
// schema the server creates, migrates once however many servers start together, and
// refuses when it is newer than it knows; deferred statements sent as one pipeline.
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/storage/pg/connection.h"
#include "server/storage/pg/schema.h"
#include "tests/support/pg_test.h"

namespace jobstream::storage::pg {
namespace {

class PgSchemaTest : public testing::PgTest {};

TEST_F(PgSchemaTest, AnEmptyDatabaseIsBroughtToTheCurrentSchemaOnce) {
  auto conn = Connect(NewDatabase());
  ASSERT_NE(conn, nullptr);
  auto before = MigrateSchema(*conn);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(*before, 0);
  auto tables = conn->Exec(
      "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND "
      "table_name IN ('jobs', 'events', 'requests', 'leases', 'tombstones', 'artifacts', "
      "'artifact_chunks', 'webhook_deliveries', 'jobstream_schema')");
  ASSERT_TRUE(tables.ok()) << tables.status();
  EXPECT_EQ(*tables->GetInt64(0, 0), 9);
  // Again: nothing to do.
  auto again = MigrateSchema(*conn);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, SchemaVersion());
  auto version = conn->Exec("SELECT version FROM jobstream_schema");
  ASSERT_TRUE(version.ok());
  ASSERT_EQ(version->rows(), 1);
  EXPECT_EQ(*version->GetInt64(0, 0), SchemaVersion());
}

TEST_F(PgSchemaTest, ServersStartingTogetherMigrateOneAtATime) {
  const std::string url = NewDatabase();
  std::vector<absl::StatusOr<int>> results(6, absl::UnknownError("not run"));
  std::vector<std::thread> servers;
  for (size_t i = 0; i < results.size(); ++i) {
    servers.emplace_back([&, i] {
      auto conn = PgConnection::Connect(url);
      results[i] = conn.ok() ? MigrateSchema(**conn) : conn.status();
    });
  }
  for (std::thread& t : servers) t.join();
  int found_empty = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    if (*r == 0) ++found_empty;
  }
  EXPECT_EQ(found_empty, 1);  // one migrated; the others found it done
}

TEST_F(PgSchemaTest, ASchemaNewerThanTheServerKnowsIsRefusedAndLeftAlone) {
  auto conn = Connect(NewDatabase());
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(MigrateSchema(*conn).ok());
  ASSERT_TRUE(conn->ExecScript("UPDATE jobstream_schema SET version = 99").ok());
  auto refused = MigrateSchema(*conn);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("version 99, newer than this server's"),
            std::string::npos)
      << refused.status();
  auto version = conn->Exec("SELECT version FROM jobstream_schema");
  ASSERT_TRUE(version.ok()) << version.status();  // the connection is usable again
  EXPECT_EQ(*version->GetInt64(0, 0), 99);
}

TEST_F(PgSchemaTest, FailuresSayWhatFailed) {
  // A URL libpq cannot parse, or that is not PostgreSQL's; the password never echoed.
  auto bad = PgConnection::Connect("postgresql://u:s3cret@127.0.0.1:5432/db?nosuchoption=1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_EQ(bad.status().message().find("s3cret"), std::string::npos) << bad.status();
  absl::Status other = ValidatePostgresUrl("mysql://u:s3cret@host/db");
  EXPECT_EQ(other.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(other.message().find("s3cret"), std::string::npos) << other;
  EXPECT_TRUE(ValidatePostgresUrl(server_->url()).ok());
  // Nobody listening: UNAVAILABLE.
  auto unreachable = PgConnection::Connect("postgresql://postgres@127.0.0.1:1/jobstream");
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);

  testing::PostgresProcess& postgres = Private();  // restarted below: not the shared one
  auto conn = Connect(postgres.NewDatabase().value_or(""));
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->ExecScript("CREATE TABLE k (id text PRIMARY KEY)").ok());
  ASSERT_TRUE(conn->Exec("INSERT INTO k VALUES ($1)", {PgParam::Text("a")}).ok());
  auto twice = conn->Exec("INSERT INTO k VALUES ($1)", {PgParam::Text("a")});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kAlreadyExists) << twice.status();
  auto syntax = conn->Exec("SELEC 1");
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInternal) << syntax.status();
  // Binary parameters and results round-trip any bytes.
  const std::string bytes("\0\x01\xff'\\x", 6);
  auto echoed = conn->Exec("SELECT $1::bytea", {PgParam::Binary(bytes)}, /*binary_results=*/true);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(echoed->Get(0, 0), bytes);

  // The server restarting under an open connection: UNAVAILABLE, not a crash.
  ASSERT_TRUE(postgres.Restart().ok());
  auto lost = conn->Exec("SELECT 1");
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable) << lost.status();
  EXPECT_FALSE(conn->ok());
}

TEST_F(PgSchemaTest, DeferredStatementsGoInOnePipelineAndFailAsOne) {
  testing::PostgresProcess& postgres = Private();  // restarted below: not the shared one
  auto conn = Connect(postgres.NewDatabase().value_or(""));
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->ExecScript("CREATE TABLE k (id text PRIMARY KEY, n int)").ok());
  // Deferred writes go with the next statement, in order, and it sees them.
  conn->Defer("BEGIN");
  conn->Defer("INSERT INTO k VALUES ($1, $2)", {PgParam::Text("a"), PgParam::Int(1)});
  conn->Defer("INSERT INTO k VALUES ($1, $2)", {PgParam::Text("b"), PgParam::Int(2)});
  auto sum = conn->Exec("SELECT sum(n) FROM k");
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum->GetInt64(0, 0), 3);
  EXPECT_EQ(PQtransactionStatus(conn->raw()), PQTRANS_INTRANS);
  conn->Defer("UPDATE k SET n = n * 10");
  conn->Defer("COMMIT");
  ASSERT_TRUE(conn->Flush().ok());
  EXPECT_EQ(PQtransactionStatus(conn->raw()), PQTRANS_IDLE);
  EXPECT_EQ(*conn->Exec("SELECT sum(n) FROM k")->GetInt64(0, 0), 30);

  // The first failure is the pipeline's error, with its own code; what came after it did
  // not run, and the transaction it was in is left to be rolled back.
  conn->Defer("BEGIN");
  conn->Defer("INSERT INTO k VALUES ($1, $2)", {PgParam::Text("c"), PgParam::Int(3)});
  conn->Defer("INSERT INTO k VALUES ($1, $2)", {PgParam::Text("a"), PgParam::Int(4)});
  conn->Defer("INSERT INTO k VALUES ($1, $2)", {PgParam::Text("d"), PgParam::Int(5)});
  auto failed = conn->Exec("SELECT count(*) FROM k");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAlreadyExists) << failed.status();
  EXPECT_NE(failed.status().message().find("INSERT INTO k"), std::string::npos) << failed.status();
  EXPECT_EQ(PQtransactionStatus(conn->raw()), PQTRANS_INERROR);
  ASSERT_TRUE(conn->ExecScript("ROLLBACK").ok());
  EXPECT_TRUE(conn->ok());
  EXPECT_EQ(*conn->Exec("SELECT count(*) FROM k")->GetInt64(0, 0), 2) << "nothing of it stayed";
  // Dropped, a deferred statement never runs.
  conn->Defer("DELETE FROM k");
  conn->DropDeferred();
  EXPECT_EQ(*conn->Exec("SELECT count(*) FROM k")->GetInt64(0, 0), 2);

  // The server going away with a pipeline unsent: UNAVAILABLE, and the connection is not
  // used again.
  ASSERT_TRUE(postgres.Restart().ok());
  conn->Defer("INSERT INTO k VALUES ($1, $2)", {PgParam::Text("e"), PgParam::Int(6)});
  absl::Status lost = conn->Flush();
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  EXPECT_FALSE(conn->ok());
}

}  // namespace
}  // namespace jobstream::storage::pg
