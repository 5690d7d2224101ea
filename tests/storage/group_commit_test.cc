#include "server/storage/group_commit.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace jobstream::storage {
namespace {

v1::JobEvent Event(const std::string& id, int64_t seq) {
  v1::JobEvent e;
  e.set_job_id(id);
  e.set_sequence(seq);
  return e;
}

GroupCommitter::Write EventWrite(const std::string& id, int64_t seq,
                                 std::function<void(absl::Status)> done = nullptr) {
  GroupCommitter::Write w;
  w.batch.Put(Cf::kEvents, EventKey(id, seq), Event(id, seq).SerializeAsString());
  w.events.push_back(MakeCommittedEvent(Event(id, seq)));
  w.done = std::move(done);
  return w;
}

TEST(GroupCommitterTest, ConcurrentWritesAreBatchedDurableAndPublishedInOrder) {
  testing::TempDir dir;
  auto store = JobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  std::mutex mu;
  std::map<std::string, std::vector<int64_t>> published;
  GroupCommitter committer(store->get(), [&](const CommittedEventPtr& committed) {
    const v1::JobEvent& e = committed->event;
    std::lock_guard<std::mutex> lock(mu);
    // Published only once durable.
    EXPECT_EQ((*store)->ReadEvents(e.job_id(), e.sequence() - 1, e.sequence(), 1)->size(), 1u);
    published[e.job_id()].push_back(e.sequence());
  });
  constexpr int kThreads = 16, kPerThread = 200;
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string id = "job" + std::to_string(t);
      for (int s = 1; s <= kPerThread; ++s) {
        auto h = committer.Enqueue(EventWrite(id, s, [&](absl::Status st) {
          EXPECT_TRUE(st.ok());
          ++done;
        }));
        ASSERT_TRUE(h.ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  committer.Stop();
  EXPECT_EQ(done.load(), kThreads * kPerThread);
  EXPECT_EQ(committer.writes_committed(), uint64_t{kThreads * kPerThread});
  EXPECT_LT(committer.groups_written(), committer.writes_committed()) << "no batching happened";
  for (const auto& [id, seqs] : published) {
    ASSERT_EQ(seqs.size(), size_t{kPerThread});
    for (int s = 0; s < kPerThread; ++s) EXPECT_EQ(seqs[s], s + 1) << id;
  }
  EXPECT_FALSE(committer.Enqueue(EventWrite("late", 1)).ok());
}

TEST(GroupCommitterTest, APendingWriteCanBeReplacedInPlace) {
  testing::TempDir dir;
  auto store = JobStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  std::vector<std::string> published;
  // One write per group, with big writes ahead: ours waits its turn in the queue.
  GroupCommitter committer(
      store->get(),
      [&](const CommittedEventPtr& e) {
        published.push_back(e->event.status().progress().message());
      },
      nullptr, /*max_group=*/1);
  for (int i = 0; i < 3; ++i) {
    GroupCommitter::Write big;
    big.batch.Put(Cf::kParams, "big" + std::to_string(i), std::string(32 << 20, 'x'));
    ASSERT_TRUE(committer.Enqueue(std::move(big)).ok());
  }
  v1::JobEvent older = Event("job", 7), newer = Event("job", 7);
  older.mutable_status()->mutable_progress()->set_message("older");
  newer.mutable_status()->mutable_progress()->set_message("newer");
  GroupCommitter::Write w;
  w.batch.Put(Cf::kEvents, EventKey("job", 7), older.SerializeAsString());
  w.events.push_back(MakeCommittedEvent(older));
  auto pending = committer.Enqueue(std::move(w));
  ASSERT_TRUE(pending.ok());
  Batch batch;
  batch.Put(Cf::kEvents, EventKey("job", 7), newer.SerializeAsString());
  EXPECT_TRUE(committer.TryReplace(*pending, std::move(batch), {MakeCommittedEvent(newer)}));
  committer.Stop();
  EXPECT_FALSE(committer.TryReplace(*pending, Batch(), {})) << "a written write is final";
  auto stored = (*store)->ReadEvents("job", 6, 7, 1);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->front().status().progress().message(), "newer");
  EXPECT_EQ(published, std::vector<std::string>{"newer"});
}

}  // namespace
}  // namespace jobstream::storage
