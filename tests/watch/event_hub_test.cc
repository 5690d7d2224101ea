#include "server/watch/event_hub.h"

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/storage/group_commit.h"
#include "tests/support/drain.h"
#include "tests/support/temp_dir.h"

namespace jobstream::watch {
namespace {

using testing::kAll;

using storage::Cf;
using testing::Drain;
using v1::Job;
using v1::JobEvent;

constexpr char kJob[] = "01m81rd5kq5g91qm659eqts4bn";
constexpr char kOther[] = "01m81rd5kq5g91qm659eqts4bp";

// A real store and committer publishing into the hub, as in the server.
class EventHubTest : public ::testing::Test {
 protected:
  void Start(WatchOptions options) {
    auto store = storage::JobStore::Open(dir_.path());
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    hub_ = std::make_unique<EventHub>(store_.get(), options);
    committer_ = std::make_unique<storage::GroupCommitter>(
        store_.get(), [this](const storage::CommittedEventPtr& e) { hub_->Publish(e); });
  }
  void TearDown() override {
    if (committer_) committer_->Stop();
  }

  // Commits the job's next event (record + event) and returns once it is published.
  int64_t Append(const std::string& id, JobEvent::Type type, const std::string& message = "",
                 const std::string& job_type = "demo.steps") {
    Job& job = jobs_[id];
    job.set_id(id);
    job.set_type(job_type);
    job.set_last_sequence(job.last_sequence() + 1);
    job.set_state(type == JobEvent::CREATED     ? Job::QUEUED
                  : type == JobEvent::SUCCEEDED ? Job::SUCCEEDED
                  : type == JobEvent::FAILED    ? Job::FAILED
                                                : Job::RUNNING);
    job.mutable_progress()->set_message(message);
    JobEvent event;
    event.set_job_id(id);
    event.set_sequence(job.last_sequence());
    event.set_type(type);
    *event.mutable_status() = job;
    storage::GroupCommitter::Write w;
    w.batch.Put(Cf::kJobs, id, job.SerializeAsString());
    w.batch.Put(Cf::kEvents, storage::EventKey(id, event.sequence()), event.SerializeAsString());
    w.events.push_back(storage::MakeCommittedEvent(event));
    absl::Notification published;
    w.done = [&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      published.Notify();
    };
    EXPECT_TRUE(committer_->Enqueue(std::move(w)).ok());
    published.WaitForNotification();
    return job.last_sequence();
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<storage::GroupCommitter> committer_;
  std::map<std::string, Job> jobs_;
};

TEST_F(EventHubTest, CatchUpThenLiveHasNoGapOrDuplicateUnderConcurrentPublishing) {
  WatchOptions options;
  options.queue_limit = 100000;
  options.catch_up_batch = 7;  // many small replay steps
  Start(options);
  constexpr int kEvents = 600;
  Append(kJob, JobEvent::CREATED);
  std::atomic<int64_t> published{1};
  std::thread publisher([&] {
    for (int i = 2; i < kEvents; ++i) published = Append(kJob, JobEvent::STEP);
    published = Append(kJob, JobEvent::SUCCEEDED);
  });
  std::vector<std::thread> watchers;
  std::mutex mu;
  std::vector<std::string> failures;
  std::mt19937 rng(42);
  for (int w = 0; w < 40; ++w) {
    // Join at different moments, resuming from different points of the history.
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    const int64_t after = static_cast<int64_t>(rng() % (published.load() + 1));
    watchers.emplace_back([&, after] {
      auto sub = hub_->WatchJob(kJob, after, kAll);
      if (!sub.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(sub.status().ToString());
        return;
      }
      testing::Drained got = Drain(**sub);
      hub_->Unsubscribe(*sub);
      std::vector<int64_t> want;
      for (int64_t s = after + 1; s <= kEvents; ++s) want.push_back(s);
      if (!got.status.ok() || got.sequences() != want) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(absl::StrCat("after=", after, " status=", got.status.ToString(),
                                        " got ", got.events.size(), " events"));
      }
    });
  }
  publisher.join();
  for (auto& t : watchers) t.join();
  EXPECT_TRUE(failures.empty()) << failures.front();
  EXPECT_EQ(hub_->watchers(), 0u);
}

TEST_F(EventHubTest, QueueLimitOneGetsConflatedProgressAndEveryStateEvent) {
  WatchOptions options;
  options.queue_limit = 1;
  options.conflate_after = 0;
  Start(options);
  Append(kJob, JobEvent::CREATED);
  auto sub = hub_->WatchJob(kJob, 1, kAll);
  ASSERT_TRUE(sub.ok());
  auto poll_all = [&] {
    std::vector<std::string> got;
    for (;;) {
      auto next = (*sub)->Poll();
      if (next.kind != Subscription::Next::kSend) break;
      got.push_back(absl::StrCat(JobEvent::Type_Name(next.event->event.type()), ":",
                                 next.event->event.status().progress().message()));
    }
    return got;
  };
  // The watcher reads nothing while progress floods in: it keeps the state event and
  // only the newest PROGRESS after it.
  Append(kJob, JobEvent::STARTED);
  for (int i = 1; i <= 10; ++i) Append(kJob, JobEvent::PROGRESS, absl::StrCat("p", i));
  EXPECT_EQ(poll_all(), (std::vector<std::string>{"STARTED:", "PROGRESS:p10"}));
  Append(kJob, JobEvent::STEP, "s");
  for (int i = 1; i <= 5; ++i) Append(kJob, JobEvent::PROGRESS, absl::StrCat("q", i));
  EXPECT_EQ(poll_all(), (std::vector<std::string>{"STEP:s", "PROGRESS:q5"}));
  Append(kJob, JobEvent::SUCCEEDED);
  testing::Drained rest = Drain(**sub);
  EXPECT_TRUE(rest.status.ok()) << rest.status;
  ASSERT_EQ(rest.events.size(), 1u);
  EXPECT_EQ(rest.events[0].type(), JobEvent::SUCCEEDED);
  hub_->Unsubscribe(*sub);
}

TEST_F(EventHubTest, AHopelessWatcherIsCutOffAndCanResume) {
  WatchOptions options;
  options.queue_limit = 2;
  Start(options);
  Append(kJob, JobEvent::CREATED);
  auto slow = hub_->WatchJob(kJob, 1, kAll);
  auto fast = hub_->WatchJob(kJob, 1, kAll);
  ASSERT_TRUE(slow.ok() && fast.ok());
  Append(kJob, JobEvent::STARTED);
  ASSERT_EQ((*fast)->Poll().event->event.sequence(), 2);
  Append(kJob, JobEvent::STEP);
  ASSERT_EQ((*fast)->Poll().event->event.sequence(), 3);
  Append(kJob, JobEvent::STEP);  // the slow one now has three state events queued
  auto next = (*slow)->Poll();
  EXPECT_EQ(next.kind, Subscription::Next::kEnd);
  EXPECT_TRUE(absl::IsResourceExhausted(next.status)) << next.status;
  EXPECT_EQ((*fast)->Poll().event->event.sequence(), 4) << "the slow watcher held nobody back";
  hub_->Unsubscribe(*slow);
  // It resumes from the last sequence it received and misses nothing.
  auto resumed = hub_->WatchJob(kJob, 1, kAll);
  ASSERT_TRUE(resumed.ok());
  Append(kJob, JobEvent::SUCCEEDED);
  EXPECT_EQ(Drain(**resumed).sequences(), (std::vector<int64_t>{2, 3, 4, 5}));
  hub_->Unsubscribe(*resumed);
  hub_->Unsubscribe(*fast);
}

TEST_F(EventHubTest, FinishedJobReplaysAndEnds) {
  Start({});
  Append(kJob, JobEvent::CREATED);
  Append(kJob, JobEvent::STARTED);
  Append(kJob, JobEvent::SUCCEEDED);
  auto sub = hub_->WatchJob(kJob, 1, kAll);
  ASSERT_TRUE(sub.ok());
  testing::Drained got = Drain(**sub);
  EXPECT_TRUE(got.status.ok());
  EXPECT_EQ(got.sequences(), (std::vector<int64_t>{2, 3}));
  hub_->Unsubscribe(*sub);
  auto at_end = hub_->WatchJob(kJob, 3, kAll);
  ASSERT_TRUE(at_end.ok());
  got = Drain(**at_end);
  EXPECT_TRUE(got.status.ok());
  EXPECT_TRUE(got.events.empty());
  hub_->Unsubscribe(*at_end);
}

TEST_F(EventHubTest, RefusesBadPositionsAndUnknownJobs) {
  Start({});
  Append(kJob, JobEvent::CREATED);
  Append(kJob, JobEvent::STARTED);
  EXPECT_TRUE(absl::IsOutOfRange(hub_->WatchJob(kJob, 3, kAll).status()));
  EXPECT_TRUE(absl::IsNotFound(hub_->WatchJob(kOther, 0, kAll).status()));
  // A removed job's tombstone is reported.
  storage::Batch batch;
  batch.Put(Cf::kTombstones, kOther, storage::TombstoneValue(0, "expired", ""));
  ASSERT_TRUE(store_->Write(batch, true).ok());
  auto status = hub_->WatchJob(kOther, 0, kAll).status();
  EXPECT_TRUE(absl::IsNotFound(status));
  EXPECT_NE(status.message().find("expired at 1970-01-01T00:00:00"), std::string::npos) << status;
  EXPECT_EQ(hub_->watchers(), 0u) << "refused watches are not counted";
}

// Several servers on PostgreSQL: another server's events reach this hub by a feed that can
// lag the store. A watch resumed here from a position the store has but the feed has not
// brought yet (its first server died) is served from the store, and the late events are
// not delivered twice.
TEST_F(EventHubTest, APositionTheStoreHasButALaggingFeedHasNotIsServed) {
  Start({});
  Append(kJob, JobEvent::CREATED);
  Append(kJob, JobEvent::STARTED);  // running: the hub holds the job, at sequence 2
  // Sequences 3 to 5 committed elsewhere, not yet published here.
  Job& job = jobs_[kJob];
  std::vector<JobEvent> lagging;
  storage::Batch batch;
  for (int i = 0; i < 3; ++i) {
    job.set_last_sequence(job.last_sequence() + 1);
    JobEvent event;
    event.set_job_id(kJob);
    event.set_sequence(job.last_sequence());
    event.set_type(JobEvent::STEP);
    *event.mutable_status() = job;
    batch.Put(Cf::kEvents, storage::EventKey(kJob, event.sequence()), event.SerializeAsString());
    lagging.push_back(event);
  }
  batch.Put(Cf::kJobs, kJob, job.SerializeAsString());
  ASSERT_TRUE(store_->Write(batch, true).ok());

  auto resumed = hub_->WatchJob(kJob, 5, kAll);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  auto earlier = hub_->WatchJob(kJob, 3, kAll);
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  EXPECT_TRUE(absl::IsOutOfRange(hub_->WatchJob(kJob, 6, kAll).status()))
      << "beyond the store too: refused";
  for (const JobEvent& e : lagging) hub_->Publish(storage::MakeCommittedEvent(e));  // late
  Append(kJob, JobEvent::SUCCEEDED);
  testing::Drained got = Drain(**resumed);
  EXPECT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(got.sequences(), (std::vector<int64_t>{6}));
  got = Drain(**earlier);
  EXPECT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(got.sequences(), (std::vector<int64_t>{4, 5, 6}));
  hub_->Unsubscribe(*resumed);
  hub_->Unsubscribe(*earlier);
}

TEST_F(EventHubTest, WatchJobsStartsWithSnapshotsThenFollowsMatchingJobs) {
  Start({});
  Append(kJob, JobEvent::CREATED, "", "demo.steps");
  Append(kJob, JobEvent::STARTED, "", "demo.steps");
  Append(kOther, JobEvent::CREATED, "", "other.type");
  const std::string done_job = "01m81rd5kq5g91qm659eqts4bq";
  Append(done_job, JobEvent::CREATED, "", "demo.steps");
  Append(done_job, JobEvent::SUCCEEDED, "", "demo.steps");
  JobFilter filter;
  filter.types.insert("demo.steps");
  auto sub = hub_->WatchJobs(filter);
  ASSERT_TRUE(sub.ok());
  auto first = (*sub)->Poll();
  ASSERT_EQ(first.kind, Subscription::Next::kSend);
  EXPECT_EQ(first.event->event.type(), JobEvent::SNAPSHOT);
  EXPECT_EQ(first.event->event.job_id(), kJob);
  EXPECT_EQ(first.event->event.sequence(), 2);
  EXPECT_EQ((*sub)->Poll().kind, Subscription::Next::kWait) << "finished and filtered jobs skipped";
  Append(kOther, JobEvent::STARTED, "", "other.type");
  Append(kJob, JobEvent::SUCCEEDED, "", "demo.steps");
  auto next = (*sub)->Poll();
  ASSERT_EQ(next.kind, Subscription::Next::kSend);
  EXPECT_EQ(next.event->event.job_id(), kJob);
  EXPECT_EQ(next.event->event.type(), JobEvent::SUCCEEDED);
  hub_->Close(absl::UnavailableError("bye"));
  EXPECT_TRUE(absl::IsUnavailable((*sub)->Poll().status));
  EXPECT_TRUE(absl::IsUnavailable(hub_->WatchJobs({}).status()));
  EXPECT_TRUE(absl::IsUnavailable(hub_->WatchJob(kJob, 0, kAll).status()));
  hub_->Unsubscribe(*sub);
}

TEST_F(EventHubTest, MaxWatchersIsEnforced) {
  WatchOptions options;
  options.max_watchers = 2;
  Start(options);
  Append(kJob, JobEvent::CREATED);
  auto a = hub_->WatchJob(kJob, 0, kAll);
  auto b = hub_->WatchJobs({});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(hub_->WatchJob(kJob, 0, kAll).status()));
  hub_->Unsubscribe(*a);
  auto c = hub_->WatchJob(kJob, 0, kAll);
  EXPECT_TRUE(c.ok());
  hub_->Unsubscribe(*b);
  hub_->Unsubscribe(*c);
}

TEST_F(EventHubTest, MaxWatchersPerJobIsEnforcedPerJob) {
  WatchOptions options;
  options.max_watchers_per_job = 2;
  Start(options);
  Append(kJob, JobEvent::CREATED);
  Append("01m81rd5kq5g91qm659eqts4zz", JobEvent::CREATED);
  auto a = hub_->WatchJob(kJob, 0, kAll);
  auto b = hub_->WatchJob(kJob, 0, kAll);
  ASSERT_TRUE(a.ok() && b.ok());
  auto refused = hub_->WatchJob(kJob, 0, kAll);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status()));
  EXPECT_NE(refused.status().message().find("--max_watchers_per_job"), std::string::npos);
  auto other = hub_->WatchJob("01m81rd5kq5g91qm659eqts4zz", 0, kAll);  // another job: fine
  EXPECT_TRUE(other.ok());
  EXPECT_EQ(hub_->watchers(), 3u);  // the refusal was not counted
  hub_->Unsubscribe(*a);
  auto c = hub_->WatchJob(kJob, 0, kAll);
  EXPECT_TRUE(c.ok());
  for (auto* sub : {&*b, &*c, &*other}) hub_->Unsubscribe(*sub);
}

}  // namespace
}  // namespace jobstream::watch
