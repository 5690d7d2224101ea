// (STEP events: a watcher behind may have PROGRESS conflated, never a STEP.)
// Two servers' worth of store, hub and feed on one real PostgreSQL: a watcher on one sees
// every event written through the other, once and in order, and when its server's feed
// connection is cut it is ended UNAVAILABLE and resumes with no gap.
#include "server/watch/pg_event_feed.h"

#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/drain.h"
#include "tests/support/pg_test.h"

namespace jobstream::watch {
namespace {

using storage::pg::PgStore;
using testing::Drain;
using v1::Job;
using v1::JobEvent;

using testing::kAll;

// One server's part: its store (pool), hub and feed.
struct Node {
  explicit Node(const std::string& url) {
    auto opened = PgStore::Open(url, 4);
    EXPECT_TRUE(opened.ok()) << opened.status();
    store = *std::move(opened);
    hub = std::make_unique<EventHub>(store.get(), WatchOptions());
    feed = std::make_unique<PgEventFeed>(url, store.get(), hub.get());
    absl::Status started = feed->Start();
    EXPECT_TRUE(started.ok()) << started;
  }
  ~Node() {
    feed->Stop();
    hub->Close(absl::UnavailableError("test over"));
  }
  std::unique_ptr<PgStore> store;
  std::unique_ptr<EventHub> hub;
  std::unique_ptr<PgEventFeed> feed;
};

class PgEventFeedTest : public testing::PgTest {
 protected:
  static void Create(PgStore& store, const std::string& id) {
    Job job;
    job.set_id(id);
    job.set_type("t");
    job.set_state(Job::QUEUED);
    *job.mutable_create_time() = v1::ToProto(absl::Now());
    JobEvent created;
    created.set_type(JobEvent::CREATED);
    ASSERT_TRUE(store.InsertJob(job, {}, created).ok());
  }
  static void Change(PgStore& store, const std::string& id, JobEvent::Type type,
                     Job::State state) {
    auto done = store.Transition(id, [&](Job& job, std::vector<JobEvent>& events) {
      job.set_state(state);
      JobEvent e;
      e.set_type(type);
      events.push_back(e);
      return absl::OkStatus();
    });
    ASSERT_TRUE(done.ok()) << done.status();
  }
};

TEST_F(PgEventFeedTest, AWatcherOnOneServerSeesEveryEventWrittenThroughAnother) {
  const std::string url = NewDatabase();
  Node a(url), b(url);
  Create(*a.store, "job-1");
  auto sub = b.hub->WatchJob("job-1", 0, kAll);
  ASSERT_TRUE(sub.ok()) << sub.status();
  // Many jobs at once, so notifications arrive in bursts: a watcher of all of them on b.
  JobFilter all;
  all.scope = kAll;
  auto every = b.hub->WatchJobs(all);
  ASSERT_TRUE(every.ok()) << every.status();

  constexpr int kSteps = 300;
  testing::Drained got;  // drained as it comes: a watcher far behind is cut off
  std::thread watcher([&] { got = Drain(**sub); });
  // The many-job watcher reads as it comes too.
  std::map<std::string, std::vector<int64_t>> seen;
  absl::Status every_end;
  std::thread every_watcher([&] {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    // job-1 after its CREATED (before this watcher began), and every other job whole.
    for (size_t total = 0; total < 20 * 3 + kSteps + 2 && absl::Now() < deadline;) {
      auto next = (*every)->Poll();
      if (next.kind == Subscription::Next::kEnd) {
        every_end = next.status;
        return;
      }
      if (next.kind == Subscription::Next::kWait) {
        absl::SleepFor(absl::Milliseconds(1));
        continue;
      }
      if (next.event->event.type() != JobEvent::SNAPSHOT) {
        seen[next.event->event.job_id()].push_back(next.event->event.sequence());
        ++total;
      }
    }
  });
  std::thread other([&] {
    for (int j = 0; j < 20; ++j) {
      const std::string id = absl::StrCat("other-", j);
      Create(*a.store, id);
      Change(*a.store, id, JobEvent::STARTED, Job::RUNNING);
      Change(*a.store, id, JobEvent::SUCCEEDED, Job::SUCCEEDED);
    }
  });
  Change(*a.store, "job-1", JobEvent::STARTED, Job::RUNNING);
  for (int i = 0; i < kSteps; ++i) Change(*a.store, "job-1", JobEvent::STEP, Job::RUNNING);
  Change(*a.store, "job-1", JobEvent::SUCCEEDED, Job::SUCCEEDED);
  other.join();
  watcher.join();
  EXPECT_TRUE(got.status.ok()) << got.status;
  ASSERT_EQ(got.events.size(), size_t{kSteps + 3});
  for (size_t i = 0; i < got.events.size(); ++i) {
    EXPECT_EQ(got.events[i].sequence(), int64_t(i + 1));
  }
  EXPECT_EQ(got.events.back().type(), JobEvent::SUCCEEDED);
  b.hub->Unsubscribe(*sub);

  // The many-job watcher saw each other job's three events, in order.
  every_watcher.join();
  EXPECT_TRUE(every_end.ok()) << every_end;
  for (int j = 0; j < 20; ++j) {
    EXPECT_EQ(seen[absl::StrCat("other-", j)], (std::vector<int64_t>{1, 2, 3})) << j;
  }
  b.hub->Unsubscribe(*every);
}

TEST_F(PgEventFeedTest, AFeedThatLosesItsConnectionEndsWatchersWhoResumeWithoutAGap) {
  const std::string url = NewDatabase();
  Node a(url), b(url);
  Create(*a.store, "job-2");
  Change(*a.store, "job-2", JobEvent::STARTED, Job::RUNNING);
  auto sub = b.hub->WatchJob("job-2", 0, kAll);
  ASSERT_TRUE(sub.ok()) << sub.status();
  for (int i = 0; i < 10; ++i) Change(*a.store, "job-2", JobEvent::STEP, Job::RUNNING);

  // Cut b's feed (and a's: both LISTEN) from the server side, and write meanwhile. Only
  // this test's database: other tests' feeds on the shared server are not this test's.
  auto admin = Connect(url);
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin->ExecScript("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() "
                                "AND datname = current_database()")
                  .ok());
  for (int i = 0; i < 10; ++i) Change(*a.store, "job-2", JobEvent::STEP, Job::RUNNING);

  testing::Drained first = Drain(**sub);
  EXPECT_EQ(first.status.code(), absl::StatusCode::kUnavailable) << first.status;
  b.hub->Unsubscribe(*sub);
  const int64_t last = first.events.empty() ? 0 : first.events.back().sequence();
  for (size_t i = 0; i < first.events.size(); ++i) {
    EXPECT_EQ(first.events[i].sequence(), int64_t(i + 1));
  }

  // The feed listens again; a watcher resuming after its last sequence gets the rest.
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       b.feed->reconnects() == 0 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(b.feed->reconnects(), 1);
  auto resumed = b.hub->WatchJob("job-2", last, kAll);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  for (int i = 0; i < 10; ++i) Change(*a.store, "job-2", JobEvent::STEP, Job::RUNNING);
  Change(*a.store, "job-2", JobEvent::SUCCEEDED, Job::SUCCEEDED);
  testing::Drained rest = Drain(**resumed);
  EXPECT_TRUE(rest.status.ok()) << rest.status;
  ASSERT_FALSE(rest.events.empty());
  for (size_t i = 0; i < rest.events.size(); ++i) {
    EXPECT_EQ(rest.events[i].sequence(), last + int64_t(i) + 1);
  }
  EXPECT_EQ(rest.events.back().sequence(), 33);
  b.hub->Unsubscribe(*resumed);
}

}  // namespace
}  // namespace jobstream::watch
