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
    EXPECT_TRUE(q.Remove(*next));
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
  EXPECT_TRUE(q.Remove(storage::QueueKey("a", "acme", 0, 100, Id(1))));
  EXPECT_FALSE(q.Next({"a"}, nullptr, &acme).has_value()) << "its other job is not due";
  EXPECT_EQ(q.queued_of_tenant("acme"), 1);
  EXPECT_EQ(q.Promote(5000), std::vector<std::string>{"a"});
  EXPECT_EQ(storage::ParseQueueKey(*q.Next({"a"}, nullptr, &acme))->job_id, Id(4));
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
    ASSERT_TRUE(q.Remove(*next));
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
  EXPECT_TRUE(q.Remove(Key("b", 0, 99, 3)));
  EXPECT_FALSE(q.Remove(Key("b", 0, 99, 3)));
  EXPECT_FALSE(q.Remove("garbage"));
  EXPECT_EQ(q.queued("b"), 1);
  EXPECT_TRUE(q.HasReady("a"));
  EXPECT_FALSE(q.HasReady("c"));
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
