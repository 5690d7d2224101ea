#include "server/jobs/job_queue.h"

#include "gtest/gtest.h"
#include "server/jobs/leases.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {
namespace {

std::string Id(int n) {
  std::string id = "01m81rd5kq5g91qm659eqts4b0";
  id[25] = "0123456789abcdefghjkmnpqrstvwxyz"[n % 32];
  id[24] = "0123456789abcdefghjkmnpqrstvwxyz"[n / 32];
  return id;
}

std::string Key(const std::string& type, int priority, int64_t ready_ms, int n) {
  return storage::QueueKey(type, "", priority, ready_ms, Id(n));
}

TEST(JobQueueTest, PriorityThenReadyTimeThenIdAcrossTypes) {
  JobQueue q;
  q.Add(Key("a", 0, 100, 1), 1000);
  q.Add(Key("a", 5, 300, 2), 1000);
  q.Add(Key("b", 5, 200, 3), 1000);
  q.Add(Key("b", 0, 100, 0), 1000);
  std::vector<std::string> order;
  while (auto next = q.Next({"a", "b"}, nullptr)) {
    order.push_back(storage::ParseQueueKey(*next)->job_id);
    EXPECT_TRUE(q.Remove(*next, 0));
  }
  EXPECT_EQ(order, (std::vector<std::string>{Id(3), Id(2), Id(0), Id(1)}));
  EXPECT_EQ(q.size(), 0u);
}

TEST(JobQueueTest, EachTenantHasItsLaneAndTheOrderHoldsAcrossLanes) {
  JobQueue q;
  q.Add(storage::QueueKey("a", "acme", 0, 100, Id(1)), 1000);
  q.Add(storage::QueueKey("a", "bolt", 5, 300, Id(2)), 1000);
  q.Add(storage::QueueKey("a", "", 1, 100, Id(3)), 1000);
  q.Add(storage::QueueKey("a", "acme", 0, 5000, Id(4)), 1000);  // scheduled
  EXPECT_EQ(q.queued("a"), 4);
  EXPECT_EQ(q.queued_of_tenant("acme"), 2);
  EXPECT_EQ(q.queued_of_tenant("bolt"), 1);
  EXPECT_EQ(q.queued_of_tenant("none"), 0);
  // Everyone's: by priority across tenants.
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr))->job_id, Id(2));
  // One tenant's only.
  const std::string acme = "acme", none = "nobody";
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr, &acme))->job_id, Id(1));
  EXPECT_FALSE(q.Next({"a"}, nullptr, &none).has_value());
  EXPECT_TRUE(q.Remove(storage::QueueKey("a", "acme", 0, 100, Id(1)), 0));
  EXPECT_FALSE(q.Next({"a"}, nullptr, &acme).has_value()) << "its other job is not due";
  EXPECT_EQ(q.queued_of_tenant("acme"), 1);
  EXPECT_EQ(q.Promote(5000), std::vector<std::string>{"a"});
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr, &acme))->job_id, Id(4));
}

TEST(JobQueueTest, OldestReadyIsTheEarliestReadyTimeOfAnyLaneOrPriority) {
  JobQueue q;
  EXPECT_FALSE(q.OldestReadyMs("a").has_value());
  q.Add(storage::QueueKey("a", "acme", 9, 700, Id(1)), 1000);
  q.Add(storage::QueueKey("a", "acme", 0, 300, Id(2)), 1000);  // behind a higher priority
  q.Add(storage::QueueKey("a", "acme", -5, 800, Id(3)), 1000);
  q.Add(storage::QueueKey("a", "bolt", 9, 500, Id(4)), 1000);
  q.Add(storage::QueueKey("a", "", 0, 4000, Id(5)), 1000);  // scheduled: not ready yet
  q.Add(storage::QueueKey("b", "", 0, 100, Id(6)), 1000);
  EXPECT_EQ(q.OldestReadyMs("a"), 300);
  EXPECT_EQ(q.OldestReadyMs("b"), 100);
  EXPECT_TRUE(q.Remove(storage::QueueKey("a", "acme", 0, 300, Id(2)), 1000));
  EXPECT_EQ(q.OldestReadyMs("a"), 500);
  EXPECT_TRUE(q.Remove(storage::QueueKey("a", "acme", 9, 700, Id(1)), 1000));
  EXPECT_TRUE(q.Remove(storage::QueueKey("a", "bolt", 9, 500, Id(4)), 1000));
  EXPECT_TRUE(q.Remove(storage::QueueKey("a", "acme", -5, 800, Id(3)), 1000));
  EXPECT_FALSE(q.OldestReadyMs("a").has_value()) << "only a scheduled job is left";
  q.Promote(5000);
  EXPECT_EQ(q.OldestReadyMs("a"), 4000) << "due now, so ready";
}

TEST(JobQueueTest, TenantsAtOnePriorityTakeTurnsWhateverTheirBacklog) {
  JobQueue q;
  for (int i = 0; i < 800; ++i) {  // acme's backlog, all older than bolt's jobs
    q.Add(storage::QueueKey("a", "acme", 0, 100 + i, Id(i)), 10'000);
  }
  const std::vector<std::string> bolt = {Id(900), Id(901), Id(902)};
  for (const std::string& id : bolt) q.Add(storage::QueueKey("a", "bolt", 0, 5000, id), 10'000);
  q.Add(storage::QueueKey("a", "cobra", 0, 6000, Id(950)), 10'000);
  std::vector<std::string> tenants;
  for (int i = 0; i < 10; ++i) {
    auto next = q.Next({"a"}, nullptr);
    ASSERT_TRUE(next.has_value());
    tenants.push_back(storage::ParseQueueKey(*next)->tenant);
    ASSERT_TRUE(q.Remove(*next, 0));
  }
  // Round robin among the lanes with work, not acme's 800 first.
  EXPECT_EQ(tenants, (std::vector<std::string>{"acme", "bolt", "cobra", "acme", "bolt", "acme",
                                               "bolt", "acme", "acme", "acme"}));
  // A higher priority still goes first, whoever has been served.
  q.Add(storage::QueueKey("a", "acme", 7, 9000, Id(960)), 10'000);
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr))->job_id, Id(960));
}

TEST(JobQueueTest, ScheduledJobsWaitForTheirTime) {
  JobQueue q;
  q.Add(Key("a", 9, 5000, 1), 1000);  // later, though higher priority
  q.Add(Key("a", 0, 900, 2), 1000);
  EXPECT_EQ(q.queued("a"), 2);
  EXPECT_EQ(q.NextDue(), 5000);
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr))->job_id, Id(2));
  EXPECT_TRUE(q.Promote(4999).empty());
  EXPECT_EQ(q.Promote(5000), std::vector<std::string>{"a"});
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr))->job_id, Id(1));
  EXPECT_FALSE(q.NextDue().has_value());
}

TEST(JobQueueTest, AdmitSkipsATypeAtItsLimitAndRemoveFindsScheduledKeys) {
  JobQueue q;
  q.Add(Key("a", 5, 1, 1), 10);
  q.Add(Key("b", 0, 1, 2), 10);
  q.Add(Key("b", 0, 99, 3), 10);
  auto not_a = [](absl::string_view type) { return type != "a"; };
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a", "b"}, not_a))->job_id, Id(2));
  EXPECT_FALSE(q.Next({"c"}, nullptr).has_value());
  EXPECT_TRUE(q.Remove(Key("b", 0, 99, 3), 0));
  EXPECT_FALSE(q.Remove(Key("b", 0, 99, 3), 0));
  EXPECT_FALSE(q.Remove("garbage", 0));
  EXPECT_EQ(q.queued("b"), 1);
  EXPECT_TRUE(q.HasReady("a"));
  EXPECT_FALSE(q.HasReady("c"));
}

std::string Keyed(const std::string& tenant, const std::string& key, int64_t ready_ms, int n) {
  return storage::QueueKey("a", tenant, 0, ready_ms, Id(n), key);
}

// Takes `n` jobs in the order Next gives them, each started at `now_ms`; returns
// "tenant/key" of each.
std::vector<std::string> Take(JobQueue& q, int n, int64_t now_ms = 0) {
  std::vector<std::string> taken;
  for (int i = 0; i < n; ++i) {
    auto next = q.Next({"a"}, nullptr);
    if (!next) break;
    auto entry = storage::ParseQueueKey(*next);
    taken.push_back(entry->tenant + "/" + entry->concurrency_key);
    EXPECT_TRUE(q.Start(*next, now_ms));
  }
  return taken;
}

TEST(JobQueueTest, KeysTakeTurnsWithinATenantsTurn) {
  JobQueue q;
  for (int i = 0; i < 500; ++i) q.Add(Keyed("acme", "big", 100 + i, i), 10'000);
  q.Add(Keyed("acme", "small", 5000, 600), 10'000);
  q.Add(Keyed("acme", "small", 5001, 601), 10'000);
  q.Add(Keyed("acme", "", 5002, 602), 10'000);
  q.Add(Keyed("bolt", "x", 6000, 700), 10'000);
  q.Add(Keyed("bolt", "x", 6001, 701), 10'000);
  // Tenants alternate; within acme's turns its keys alternate: its three keys share half.
  EXPECT_EQ(Take(q, 9), (std::vector<std::string>{"acme/big", "bolt/x", "acme/small", "bolt/x",
                                                  "acme/", "acme/big", "acme/small",
                                                  "acme/big", "acme/big"}));
  EXPECT_EQ(q.queued("a"), 505 - 9);
}

TEST(JobQueueTest, AKeyAtItsConcurrencyIsHeldBackUntilOneOfItsJobsEnds) {
  JobQueue q({{"a", KeyLimit{2, 0}}});
  for (int i = 0; i < 5; ++i) q.Add(Keyed("acme", "k1", 100 + i, i), 1000);
  q.Add(Keyed("acme", "k2", 900, 10), 1000);
  EXPECT_EQ(Take(q, 4), (std::vector<std::string>{"acme/k1", "acme/k2", "acme/k1"}))
      << "k1 stops at two running; k2 has no more";
  EXPECT_FALSE(q.HasReady("a"));
  int total = 0;
  auto held = q.AtLimit("a", nullptr, 10, &total);
  ASSERT_EQ(total, 1);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].key, "k1");
  EXPECT_EQ(held[0].running, 2);
  EXPECT_EQ(held[0].queued, 3);
  EXPECT_TRUE(held[0].concurrency);
  const std::string bolt = "bolt";
  EXPECT_TRUE(q.AtLimit("a", &bolt, 10, &total).empty()) << "another tenant's keys are not shown";
  q.Release("a", "acme", "k1", 2000);
  EXPECT_TRUE(q.HasReady("a"));
  EXPECT_EQ(Take(q, 2), std::vector<std::string>{"acme/k1"});
  // A job found running at a restart counts as well.
  q.Hold("a", "acme", "k9");
  q.Hold("a", "acme", "k9");
  q.Add(Keyed("acme", "k9", 950, 20), 3000);
  EXPECT_FALSE(q.Next({"a"}, nullptr).has_value());
  q.Release("a", "acme", "k9", 3000);
  EXPECT_EQ(Take(q, 1), std::vector<std::string>{"acme/k9"});
}

TEST(JobQueueTest, AKeysRateSpendsABucketOfOneSecondsStartsThenWaits) {
  JobQueue q({{"a", KeyLimit{0, 2}}});  // two a second: a bucket of two
  for (int i = 0; i < 6; ++i) q.Add(Keyed("", "k", 100 + i, i), 1000);
  q.Add(Keyed("", "other", 100, 9), 1000);
  EXPECT_EQ(Take(q, 10, 1000), (std::vector<std::string>{"/k", "/other", "/k"}));
  EXPECT_FALSE(q.HasReady("a"));
  EXPECT_EQ(q.NextDue(), 1500) << "one token back after half a second";
  int total = 0;
  auto held = q.AtLimit("a", nullptr, 10, &total);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].rate_wait_ms, 1500);
  EXPECT_FALSE(held[0].concurrency);
  EXPECT_TRUE(q.Promote(1499).empty());
  EXPECT_EQ(q.Promote(1500), std::vector<std::string>{"a"});
  EXPECT_EQ(Take(q, 10, 1500), std::vector<std::string>{"/k"});
  EXPECT_EQ(q.NextDue(), 2000);
  // After a long pause the bucket holds one second's starts, not more.
  q.Promote(60'000);
  EXPECT_EQ(Take(q, 10, 60'000), (std::vector<std::string>{"/k", "/k"}));
  EXPECT_EQ(q.NextDue(), 60'500);
}

TEST(JobQueueTest, IdleKeysLeaveMemory) {
  JobQueue q({{"a", KeyLimit{1, 0}}, {"r", KeyLimit{0, 1}}});
  const size_t before = q.lanes_in_use();
  for (int i = 0; i < 1000; ++i) {
    q.Add(Keyed("acme", "customer-" + std::to_string(i), 100, i), 1000);
  }
  EXPECT_EQ(q.lanes_in_use(), before + 1000);
  EXPECT_EQ(Take(q, 2000).size(), 1000u);
  EXPECT_EQ(q.lanes_in_use(), before + 1000) << "each key has a job running";
  for (int i = 0; i < 1000; ++i) q.Release("a", "acme", "customer-" + std::to_string(i), 2000);
  EXPECT_EQ(q.lanes_in_use(), before);
  // A rate-bound key stays until its bucket is full again (forgetting it sooner would
  // give it a full one early), then leaves.
  q.Add(storage::QueueKey("r", "", 0, 100, Id(1), "k"), 1000);
  ASSERT_TRUE(q.Start(*q.Next({"r"}, nullptr), 1000));
  q.Release("r", "", "k", 1000);
  EXPECT_EQ(q.lanes_in_use(), before + 1);
  q.Promote(1999);
  EXPECT_EQ(q.lanes_in_use(), before + 1);
  q.Promote(2000);
  EXPECT_EQ(q.lanes_in_use(), before);
  // And a cancelled job's key leaves too.
  q.Add(Keyed("acme", "gone", 100, 5), 1000);
  EXPECT_TRUE(q.Remove(Keyed("acme", "gone", 100, 5), 1000));
  EXPECT_EQ(q.lanes_in_use(), before);
}

TEST(LeasesTest, LeaseIdsNameTheirJobAndNeverRepeat) {
  const std::string job = Id(7);
  const std::string a = NewLeaseId(job), b = NewLeaseId(job);
  EXPECT_NE(a, b);
  ASSERT_TRUE(LeaseJobId(a).ok());
  EXPECT_EQ(*LeaseJobId(a), job);
  for (const std::string& bad : {std::string(""), job, job + "-", job + "-0000000000000001x",
                                 job + "_0000000000000000", std::string(43, 'a'),
                                 job + "-000000000000000I"}) {
    EXPECT_EQ(LeaseJobId(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(LeasesTest, DeadlinesAreTakenInOrderOncePerJob) {
  DeadlineIndex index;
  index.Set("j1", 300);
  index.Set("j2", 100);
  index.Set("j1", 200);  // moved, not added
  EXPECT_EQ(index.Next(), 100);
  EXPECT_EQ(index.TakeDue(250), (std::vector<std::string>{"j2", "j1"}));
  EXPECT_FALSE(index.Next().has_value());
  index.Set("j3", 5);
  index.Clear("j3");
  EXPECT_TRUE(index.TakeDue(1000).empty());
}

}  // namespace
}  // namespace jobstream::jobs
