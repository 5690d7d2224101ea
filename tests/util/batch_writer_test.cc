// BatchWriter: every item written once, in batches no larger than asked, in the order
// posted by each writer thread; Close writes what is queued and refuses more.
#include "server/util/batch_writer.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace jobstream::util {
namespace {

TEST(BatchWriterTest, EveryItemIsWrittenOnceInBatchesOfAtMostTheMax) {
  constexpr int kThreads = 8, kEach = 2000;
  absl::Mutex mu;
  std::vector<int> written;
  size_t largest = 0;
  int batches = 0;
  {
    BatchWriter<int> writer("test-write", 2, 16, [&](std::vector<int>& batch) {
      absl::SleepFor(absl::Microseconds(200));  // a commit's worth: the next batch gathers
      absl::MutexLock lock(&mu);
      written.insert(written.end(), batch.begin(), batch.end());
      largest = std::max(largest, batch.size());
      ++batches;
    });
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; ++t) {
      posters.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          int item = t * kEach + i;
          EXPECT_TRUE(writer.Post(item));
        }
      });
    }
    for (auto& p : posters) p.join();
  }  // closed: what was queued is written
  ASSERT_EQ(written.size(), size_t{kThreads * kEach});
  std::sort(written.begin(), written.end());
  for (int i = 0; i < kThreads * kEach; ++i) ASSERT_EQ(written[i], i);
  EXPECT_LE(largest, 16u);
  EXPECT_GT(largest, 1u) << "posts that came while a batch was written went together";
  EXPECT_LT(batches, kThreads * kEach);
}

TEST(BatchWriterTest, CloseWritesWhatIsQueuedThenRefusesAndLeavesTheItem) {
  absl::Notification release;
  std::atomic<int> written{0};
  BatchWriter<std::string> writer("test-close", 1, 4, [&](std::vector<std::string>& batch) {
    release.WaitForNotification();
    written += static_cast<int>(batch.size());
  });
  for (int i = 0; i < 10; ++i) {
    std::string item = "queued";
    ASSERT_TRUE(writer.Post(item));
  }
  std::thread closer([&] { writer.Close(); });
  absl::SleepFor(absl::Milliseconds(50));
  release.Notify();
  closer.join();
  EXPECT_EQ(written.load(), 10);
  std::string late = "late";
  EXPECT_FALSE(writer.Post(late));
  EXPECT_EQ(late, "late") << "a refused item is the caller's to answer";
}

}  // namespace
}  // namespace jobstream::util
