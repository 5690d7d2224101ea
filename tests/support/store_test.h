// Suites that hold for both stores run once per store, as one parameterised suite:
//
//   class ServerTest : public testing::StoreTest { ... };
//   TEST_P(ServerTest, ...) { Start(); ... }
//   JOBSTREAM_BOTH_STORES(ServerTest);
//
// For PostgreSQL each test gets a fresh database on a PostgreSQL of the test process's own
// (started at the first test that needs one, stopped at exit); StoreFlags() puts a server
// on the test's store — the same one for every server the test starts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/pg_test.h"

namespace jobstream::testing {

enum class StoreKind { kRocksDb, kPostgres };

inline std::string StoreKindName(const ::testing::TestParamInfo<StoreKind>& info) {
  return info.param == StoreKind::kRocksDb ? "RocksDB" : "PostgreSQL";
}

class StoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    // A TEST_F of a fixture derived from this one runs on RocksDB only (it has no param).
    if (::testing::UnitTest::GetInstance()->current_test_info()->value_param() != nullptr) {
      kind_ = GetParam();
    }
    if (kind_ != StoreKind::kPostgres) return;
    if (!PostgresProcess::Available()) GTEST_SKIP() << "PostgreSQL 15 is not installed";
    static absl::Status* started = nullptr;
    if (started == nullptr) {
      // Destroyed at exit: a fast shutdown, and its dir removed.
      static PostgresProcess postgres;
      started = new absl::Status(postgres.Start());
      postgres_ = &postgres;
    }
    ASSERT_TRUE(started->ok()) << *started;
    auto url = postgres_->NewDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *std::move(url);
  }

  bool postgres() const { return kind_ == StoreKind::kPostgres; }
  // Flags that put a server on this test's store (RocksDB: none; its data dir is given).
  // A server killed mid-run leaves its runs to be taken over when their leases expire:
  // 3 s here rather than 30 — or, restarted with the same --server_id (kServerId, as
  // these servers are), ended by its recovery at once.
  std::vector<std::string> StoreFlags() const {
    if (url_.empty()) return {};
    return {"--store=" + url_, "--run_lease=3s", std::string("--server_id=") + kServerId};
  }
  static constexpr char kServerId[] = "e2e-server";
  const std::string& url() const { return url_; }
  // The suite's PostgreSQL (postgres() only).
  static PostgresProcess* postgres_server() { return postgres_; }

 private:
  static inline PostgresProcess* postgres_ = nullptr;
  StoreKind kind_ = StoreKind::kRocksDb;
  std::string url_;
};

}  // namespace jobstream::testing

#define JOBSTREAM_BOTH_STORES(suite)                                                      \
  INSTANTIATE_TEST_SUITE_P(Stores, suite,                                                 \
                           ::testing::Values(::jobstream::testing::StoreKind::kRocksDb,   \
                                             ::jobstream::testing::StoreKind::kPostgres), \
                           ::jobstream::testing::StoreKindName)
