// A gtest fixture with a PostgreSQL of the suite's own (PostgresProcess), started once per
// test process, and a fresh database per test. Skips, saying so, where PostgreSQL 15 is not
// installed.
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
  static void SetUpTestSuite() {
    if (!PostgresProcess::Available()) return;
    server_ = new PostgresProcess();
    start_ = new absl::Status(server_->Start());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete start_;
    server_ = nullptr;
    start_ = nullptr;
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "PostgreSQL 15 is not installed";
    ASSERT_TRUE(start_->ok()) << *start_;
  }
  // A new, empty database; its URL.
  static std::string NewDatabase() {
    auto url = server_->NewDatabase();
    EXPECT_TRUE(url.ok()) << url.status();
    return url.value_or("");
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

  static inline PostgresProcess* server_ = nullptr;
  static inline absl::Status* start_ = nullptr;
};

}  // namespace jobstream::testing
