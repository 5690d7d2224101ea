// A gtest fixture on the PostgreSQL the tests share (PostgresProcess::Shared: the ctest
// run's), with fresh databases per test, dropped after it; Private() starts one of the
// test's own for a test that restarts or crashes it. Skips, saying so, where PostgreSQL 15
// is not installed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/storage/event_reader.h"
#include "server/storage/pg/connection.h"
#include "tests/support/postgres_process.h"

namespace jobstream::testing {

class PgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto shared = PostgresProcess::Shared();
    ASSERT_TRUE(shared.ok()) << shared.status();
    if (*shared == nullptr) GTEST_SKIP() << "PostgreSQL 15 is not installed";
    server_ = *shared;
  }
  ~PgTest() override {
    for (const std::string& url : databases_) server_->DropDatabase(url);
  }
  // A new, empty database on the shared server; its URL.
  std::string NewDatabase() {
    if (server_ == nullptr) {
      ADD_FAILURE() << "no PostgreSQL: SetUp failed or skipped";
      return "";
    }
    auto url = server_->NewDatabase();
    EXPECT_TRUE(url.ok()) << url.status();
    if (url.ok()) databases_.push_back(*url);
    return url.value_or("");
  }
  // A PostgreSQL of this test's own, started at the first call, for a test that stops,
  // restarts or crashes it; stopped when the test ends.
  PostgresProcess& Private() {
    if (private_ == nullptr) {
      private_ = std::make_unique<PostgresProcess>(/*durable=*/false);
      const absl::Status started = private_->Start();
      EXPECT_TRUE(started.ok()) << started;
    }
    return *private_;
  }
  static std::unique_ptr<storage::pg::PgConnection> Connect(const std::string& url) {
    auto conn = storage::pg::PgConnection::Connect(url);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }

  // The job's stored events after `after`, in order (at most `limit`).
  static std::vector<v1::JobEvent> EventsOf(const storage::EventReader& store,
                                            const std::string& job_id, int64_t after = 0,
                                            size_t limit = 100000) {
    auto read = store.ReadCommittedEvents(job_id, after, INT64_MAX, limit);
    EXPECT_TRUE(read.ok()) << read.status();
    std::vector<v1::JobEvent> events;
    if (read.ok()) {
      for (const auto& e : *read) events.push_back(e->event);
    }
    return events;
  }

  PostgresProcess* server_ = nullptr;  // the shared one

 private:
  std::vector<std::string> databases_;
  std::unique_ptr<PostgresProcess> private_;
};

}  // namespace jobstream::testing
