#include "server/storage/job_store.h"

#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace jobstream::storage {
namespace {

constexpr char kJobId[] = "01m81rd5kq5g91qm659eqts4bn";

v1::JobEvent Event(int64_t seq) {
  v1::JobEvent e;
  e.set_job_id(kJobId);
  e.set_sequence(seq);
  e.set_type(v1::JobEvent::PROGRESS);
  return e;
}

TEST(JobStoreTest, RoundTripsAcrossReopen) {
  testing::TempDir dir;
  {
    auto store = JobStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    v1::Job job;
    job.set_id(kJobId);
    job.set_type("demo.steps");
    job.set_last_sequence(3);
    Batch batch;
    batch.Put(Cf::kJobs, kJobId, job.SerializeAsString());
    for (int s = 1; s <= 3; ++s) batch.Put(Cf::kEvents, EventKey(kJobId, s), Event(s).SerializeAsString());
    batch.Put(Cf::kRequests, "req-1", kJobId);
    ASSERT_TRUE((*store)->Write(batch, true).ok());
  }
  auto store = JobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto job = (*store)->GetJob(kJobId);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->type(), "demo.steps");
  auto events = (*store)->ReadEvents(kJobId, 0, 3, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[2].sequence(), 3);
  auto request = (*store)->GetRequest("req-1");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->value_or(""), kJobId);
  EXPECT_TRUE(absl::IsNotFound((*store)->GetJob("01m81rd5kq5g91qm659eqts4bz").status()));
}

TEST(JobStoreTest, ReadEventsHonoursRangeAndLimit) {
  testing::TempDir dir;
  auto store = JobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  Batch batch;
  for (int s = 1; s <= 300; ++s) batch.Put(Cf::kEvents, EventKey(kJobId, s), Event(s).SerializeAsString());
  // Another job's events right after must not leak into the range.
  batch.Put(Cf::kEvents, EventKey("01m81rd5kq5g91qm659eqts4bp", 1), Event(1).SerializeAsString());
  ASSERT_TRUE((*store)->Write(batch, true).ok());
  auto events = (*store)->ReadEvents(kJobId, 10, 300, 50);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 50u);
  EXPECT_EQ(events->front().sequence(), 11);
  EXPECT_EQ(events->back().sequence(), 60);
  events = (*store)->ReadEvents(kJobId, 295, 1000, 50);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 5u);
  events = (*store)->ReadEvents(kJobId, 20, 20, 50);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());
}

TEST(JobStoreTest, AFailingBatchWritesNothing) {
  testing::TempDir dir;
  auto store = JobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  Batch batch;
  batch.Put(Cf::kJobs, kJobId, "x");
  batch.Put(Cf::kEvents, EventKey(kJobId, 1), Event(1).SerializeAsString());
  batch.DeleteRange(Cf::kEvents, "z", "a");  // begin > end: the whole batch is refused
  EXPECT_FALSE((*store)->Write(batch, true).ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->GetJob(kJobId).status()));
  auto events = (*store)->ReadEvents(kJobId, 0, 10, 10);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());
}

TEST(JobStoreTest, ScansForwardAndBackward) {
  testing::TempDir dir;
  auto store = JobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  Batch batch;
  for (int t = 1; t <= 5; ++t) batch.Put(Cf::kByTime, ByTimeKey(t * 100, kJobId), "");
  ASSERT_TRUE((*store)->Write(batch, true).ok());
  std::vector<int64_t> seen;
  auto collect = [&](absl::string_view key, absl::string_view) {
    seen.push_back(ParseByTimeKey(key)->first);
    return true;
  };
  ASSERT_TRUE((*store)->Scan(Cf::kByTime, "", true, collect).ok());
  EXPECT_EQ(seen, (std::vector<int64_t>{500, 400, 300, 200, 100}));
  seen.clear();
  ASSERT_TRUE((*store)->Scan(Cf::kByTime, ByTimeKey(300, kJobId), true, collect).ok());
  EXPECT_EQ(seen, (std::vector<int64_t>{300, 200, 100}));
  seen.clear();
  ASSERT_TRUE((*store)->Scan(Cf::kByTime, ByTimeKey(250, kJobId), false, collect).ok());
  EXPECT_EQ(seen, (std::vector<int64_t>{300, 400, 500}));
}

}  // namespace
}  // namespace jobstream::storage
