#include "server/storage/keys.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace jobstream::storage {
namespace {

constexpr char kId[] = "01m81rd5kq5g91qm659eqts4bn";

TEST(KeysTest, EventKeysSortBySequence) {
  std::vector<int64_t> seqs = {1, 2, 9, 10, 255, 256, 65536, int64_t{1} << 40};
  std::vector<std::string> keys;
  for (int64_t s : seqs) keys.push_back(EventKey(kId, s));
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(EventKeySequence(keys[i]), seqs[i]);
}

TEST(KeysTest, QueueKeysRunHighPriorityThenEarliestThenOldest) {
  const std::string a = QueueKey("t", "", 5, 2000, "b");
  const std::string b = QueueKey("t", "", 0, 1000, "a");
  const std::string c = QueueKey("t", "", 0, 1000, "b");
  const std::string d = QueueKey("t", "", 0, 3000, "a");
  const std::string e = QueueKey("t", "", -5, 0, "a");
  std::vector<std::string> keys = {e, d, c, b, a};
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{a, b, c, d, e}));
  EXPECT_LT(QueueKey("t", "", 1000, 0, "x"), QueueKey("t", "", -1000, 0, "x"));
  EXPECT_LT(QueueKey("t", "", INT32_MAX, 0, "x"), QueueKey("t", "", INT32_MIN, 0, "x"));
}

TEST(KeysTest, QueueKeysOfOneTypeShareAPrefixNoOtherTypeHas) {
  EXPECT_EQ(QueueKey("demo", "", 0, 0, kId).rfind(QueuePrefix("demo"), 0), 0u);
  EXPECT_NE(QueueKey("demo.steps", "", 0, 0, kId).rfind(QueuePrefix("demo"), 0), 0u);
}

TEST(KeysTest, QueueKeyRoundTrips) {
  auto parsed = ParseQueueKey(QueueKey("video.render", "", -17, 123456789, kId));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->type, "video.render");
  EXPECT_EQ(parsed->priority, -17);
  EXPECT_EQ(parsed->ready_ms, 123456789);
  EXPECT_EQ(parsed->job_id, kId);
  EXPECT_FALSE(ParseQueueKey("no separator").has_value());
  EXPECT_FALSE(ParseQueueKey(std::string("t\0short", 7)).has_value());
}

TEST(KeysTest, ByTimeKeysSortByTimeAndRoundTrip) {
  EXPECT_LT(ByTimeKey(999, "z"), ByTimeKey(1000, "a"));
  auto parsed = ParseByTimeKey(ByTimeKey(1700000000123, kId));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first, 1700000000123);
  EXPECT_EQ(parsed->second, kId);
  EXPECT_FALSE(ParseByTimeKey("short").has_value());
}

TEST(KeysTest, IndexKeysGroupByStateAndTypeThenSortByTime) {
  EXPECT_LT(ByStateKey(1, 999, "z"), ByStateKey(1, 1000, "a"));
  EXPECT_LT(ByStateKey(1, 5000, kId), ByStateKey(2, 1, kId));
  EXPECT_TRUE(absl::StartsWith(ByStateKey(3, 7, kId), ByStatePrefix(3)));
  EXPECT_EQ(ByStateKey(3, 7, kId).substr(1), ByTimeKey(7, kId)) << "the position suffix";
  // A type that is a prefix of another never mixes with it.
  EXPECT_FALSE(absl::StartsWith(ByTypeStateKey("a.bc", 1, 7, kId), ByTypeStatePrefix("a.b", 1)));
  EXPECT_LT(ByTypeStateKey("a", 1, 9, kId), ByTypeStateKey("a", 2, 1, kId));
  const std::string key = ByTypeStateKey("report", 2, 7, kId);
  EXPECT_EQ(key.substr(key.size() - kByTimeKeyLength), ByTimeKey(7, kId));
}

TEST(KeysTest, TombstoneRoundTrips) {
  auto parsed = ParseTombstoneValue(TombstoneValue(42, "expired", ""));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->removed_ms, 42);
  EXPECT_EQ(parsed->reason, "expired");
  EXPECT_EQ(parsed->tenant, "");
  parsed = ParseTombstoneValue(TombstoneValue(43, "deleted", "acme"));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->removed_ms, 43);
  EXPECT_EQ(parsed->reason, "deleted");
  EXPECT_EQ(parsed->tenant, "acme");
  EXPECT_FALSE(ParseTombstoneValue("1234").has_value());
}

TEST(KeysTest, QueueKeysKeepATenantsLaneApartAndRoundTrip) {
  const std::string mine = QueueKey("render", "acme", 3, 77, kId);
  auto parsed = ParseQueueKey(mine);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->type, "render");
  EXPECT_EQ(parsed->tenant, "acme");
  EXPECT_EQ(parsed->priority, 3);
  EXPECT_EQ(parsed->ready_ms, 77);
  EXPECT_EQ(parsed->job_id, kId);
  // Without a tenant, the key is the form stores written before tenants still hold.
  EXPECT_EQ(QueueKey("render", "", 3, 77, kId).rfind(QueuePrefix("render"), 0), 0u);
  EXPECT_NE(mine.rfind(QueuePrefix("render"), 0), 0u);
  EXPECT_EQ(ParseQueueKey(QueueKey("render", "", 3, 77, kId))->tenant, "");
  EXPECT_EQ(ParseQueueKey(mine)->concurrency_key, "") << "keys made before there were any";
  auto keyed = ParseQueueKey(QueueKey("render", "acme", 3, 77, kId, "customer 42/\x7e"));
  ASSERT_TRUE(keyed.has_value());
  EXPECT_EQ(keyed->type, "render");
  EXPECT_EQ(keyed->tenant, "acme");
  EXPECT_EQ(keyed->concurrency_key, "customer 42/\x7e");
  EXPECT_EQ(keyed->job_id, kId);
  auto keyed_no_tenant = ParseQueueKey(QueueKey("render", "", 3, 77, kId, "k"));
  EXPECT_EQ(keyed_no_tenant->tenant, "");
  EXPECT_EQ(keyed_no_tenant->concurrency_key, "k");
}

TEST(KeysTest, RequestKeysAreEachTenantsOwn) {
  EXPECT_EQ(RequestKey("", "order-1"), "order-1") << "the form before tenants";
  EXPECT_NE(RequestKey("a", "order-1"), RequestKey("b", "order-1"));
  EXPECT_NE(RequestKey("a", "b\x01"), RequestKey("ab", "\x01"));
}

}  // namespace
}  // namespace jobstream::storage
