// Suites that hold for both stores run once per store, as one parameterised suite:
//
//   class ServerTest : public testing::StoreTest { ... };
//   TEST_P(ServerTest, ...) { Start(); ... }
//   JOBSTREAM_BOTH_STORES(ServerTest);
//
// For PostgreSQL each test gets a fresh database, dropped after it, on the PostgreSQL the
// tests share (PostgresProcess::Shared: the ctest run's); StoreFlags() puts a server on the
// test's store — the same one for every server the test starts.
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
    auto shared = PostgresProcess::Shared();
    ASSERT_TRUE(shared.ok()) << shared.status();
    if (*shared == nullptr) GTEST_SKIP() << "PostgreSQL 15 is not installed";
    postgres_ = *shared;
    auto url = postgres_->NewDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *std::move(url);
  }
  // After the derived fixture's members (its servers) are gone.
  ~StoreTest() override {
    if (!url_.empty()) postgres_->DropDatabase(url_);
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
