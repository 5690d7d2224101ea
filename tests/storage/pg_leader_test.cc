// One leader at a time among servers on one PostgreSQL, and another takes over when the
// leader's session ends — as when its server dies.
#include "server/storage/pg/leader.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/pg_test.h"

namespace jobstream::storage::pg {
namespace {

class PgLeaderTest : public testing::PgTest {};

TEST_F(PgLeaderTest, OneLeadsAtATimeAndAnotherTakesOverWhenItsSessionEnds) {
  const std::string url = NewDatabase();
  PgLeader a(url, kChoresLock), b(url, kChoresLock), other_chore(url, kChoresLock + 1);
  EXPECT_TRUE(a.TryLead());
  EXPECT_FALSE(b.TryLead());
  EXPECT_TRUE(a.TryLead());  // and stays
  EXPECT_FALSE(b.TryLead());
  EXPECT_TRUE(other_chore.TryLead());  // another key is another lock

  // a's server dies: its session ends, from the server side.
  auto admin = Connect(url);
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin->Exec("SELECT pg_terminate_backend($1)",
                          {PgParam::Int(a.backend_pid())}).ok());
  bool took_over = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       !took_over && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    took_over = b.TryLead();
  }
  EXPECT_TRUE(took_over);
  EXPECT_FALSE(a.TryLead());  // it notices, connects again, and finds b leading
  EXPECT_FALSE(a.TryLead());
  EXPECT_TRUE(b.TryLead());
}

TEST_F(PgLeaderTest, NobodyLeadsWhilePostgresIsDownAndOneDoesOnceItIsBack) {
  testing::PostgresProcess& postgres = Private();  // stopped and started: not the shared one
  const std::string url = postgres.NewDatabase().value_or("");
  PgLeader a(url, kChoresLock);
  EXPECT_TRUE(a.TryLead());
  postgres.Stop();
  EXPECT_FALSE(a.TryLead());
  ASSERT_TRUE(postgres.Restart().ok());
  EXPECT_TRUE(a.TryLead());
}

}  // namespace
}  // namespace jobstream::storage::pg
