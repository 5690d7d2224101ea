#include "server/jobs/job_manager.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/jobs/pg_manager.h"
#include "server/jobs/runner.h"
#include "server/watch/pg_event_feed.h"
#include "tests/support/drain.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream::jobs {
namespace {

using testing::kAll;

using v1::Job;
using v1::JobEvent;

v1::SubmitRequest Demo(const std::string& params_json = "{}") {
  v1::SubmitRequest request;
  request.set_type("demo.steps");
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(params_json, request.mutable_params()).ok());
  return request;
}

v1::Progress Progress(double fraction, const std::string& message) {
  v1::Progress p;
  p.set_fraction(fraction);
  p.set_message(message);
  return p;
}

v1::Progress Step(const std::string& name, int index, int count, double fraction) {
  v1::Progress p;
  p.set_step(name);
  p.set_step_index(index);
  p.set_step_count(count);
  p.set_fraction(fraction);
  return p;
}

// One server's jobs on the test's store, built as the server builds them: the RocksDB
// manager over a data dir, or the PostgreSQL manager with its feed over a fresh database.
// TEST_P runs on both (the contract); TEST_F on RocksDB alone (what only it has).
class JobManagerTest : public testing::StoreTest {
 protected:
  void SetUp() override {
    testing::StoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    TypeDefaults defaults;
    defaults.initial_backoff = absl::ZeroDuration();
    auto types = JobTypes::FromConfig({}, defaults);
    ASSERT_TRUE(types.ok());
    types_ = std::make_unique<JobTypes>(*std::move(types));
    Open();
  }
  void TearDown() override { Close(); }

  void Open() {
    if (postgres()) {
      auto store = storage::pg::PgStore::Open(url(), 6);
      ASSERT_TRUE(store.ok()) << store.status();
      pg_store_ = *std::move(store);
      hub_ = std::make_unique<watch::EventHub>(pg_store_.get(), watch::WatchOptions{});
      PgManagerOptions options;
      options.server_id = "test-server";  // the same after a restart: its runs end at once
      pg_ = std::make_unique<PgJobManager>(pg_store_.get(), types_.get(), options);
      feed_ = std::make_unique<watch::PgEventFeed>(url(), pg_store_.get(), hub_.get());
      feed_->SetObserver([this](const JobEvent& e) { pg_->Observe(e); });
      ASSERT_TRUE(feed_->Start().ok());
      manager_ = pg_.get();
      reader_ = pg_store_.get();
    } else {
      auto store = storage::JobStore::Open(dir_.path());
      ASSERT_TRUE(store.ok()) << store.status();
      store_ = *std::move(store);
      hub_ = std::make_unique<watch::EventHub>(store_.get(), watch::WatchOptions{});
      rocks_ = std::make_unique<JobManager>(store_.get(), hub_.get(), types_.get(),
                                            ManagerOptions{});
      manager_ = rocks_.get();
      reader_ = store_.get();
    }
    ASSERT_TRUE(manager_->Recover().ok());
  }
  // Like a crash as far as running jobs go: nothing finishes them.
  void Close() {
    if (runner_) runner_->Stop();
    runner_.reset();
    manager_ = nullptr;
    rocks_.reset();
    if (pg_) pg_->Stop();  // then the feed, which tells it what it hears
    if (feed_) feed_->Stop();
    pg_.reset();
    feed_.reset();
    hub_.reset();
    store_.reset();
    pg_store_.reset();
  }
  void StartRunner(int threads = 2) {
    runner_ = std::make_unique<Runner>(manager_, types_.get(), threads);
    runner_->Start();
  }
  // RocksDB's manager holds no job it need not (PostgreSQL's holds none at all, so there
  // is nothing to check there).
  void ExpectNoLiveJobs(const char* why) const {
    if (rocks_) {
      EXPECT_EQ(rocks_->live_jobs(), 0u) << why;
    }
  }

  absl::StatusOr<Job> Submit(const v1::SubmitRequest& request) {
    absl::Notification done;
    absl::StatusOr<Job> result;
    manager_->Submit(request, kAll, [&](absl::StatusOr<Job> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  absl::StatusOr<Job> Cancel(const std::string& id) {
    absl::Notification done;
    absl::StatusOr<Job> result;
    manager_->Cancel(id, kAll, [&](absl::StatusOr<Job> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  absl::Status Delete(const std::string& id) {
    absl::Notification done;
    absl::Status result;
    manager_->Delete(id, kAll, [&](absl::Status s) {
      result = s;
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  // Waits until everything queued for the store is durable (on PostgreSQL every call
  // commits before it answers).
  void Flush() {
    if (!rocks_) return;
    absl::Notification written;
    ASSERT_TRUE(rocks_->committer().Barrier([&](absl::Status) { written.Notify(); }).ok());
    written.WaitForNotification();
  }
  // Every event of the job from the start until it ends.
  testing::Drained Events(const std::string& id) {
    auto sub = hub_->WatchJob(id, 0, kAll);
    if (!sub.ok()) return {{}, sub.status()};
    testing::Drained out = testing::Drain(**sub);
    hub_->Unsubscribe(*sub);
    return out;
  }
  // The job's events as stored.
  std::vector<JobEvent> StoredEvents(const std::string& id) {
    auto read = reader_->ReadCommittedEvents(id, 0, INT64_MAX, 100000);
    EXPECT_TRUE(read.ok()) << read.status();
    std::vector<JobEvent> events;
    if (read.ok()) {
      for (const auto& e : *read) events.push_back(e->event);
    }
    return events;
  }
  static std::vector<std::string> Types(const testing::Drained& d) {
    std::vector<std::string> types;
    for (const auto& e : d.events) types.push_back(JobEvent::Type_Name(e.type()));
    return types;
  }
  size_t ListedJobs() {
    auto listed = manager_->List({}, kAll);
    EXPECT_TRUE(listed.ok());
    return listed.ok() ? listed->jobs_size() : 0;
  }

  testing::TempDir dir_;
  std::unique_ptr<JobTypes> types_;
  std::unique_ptr<storage::JobStore> store_;         // RocksDB
  std::unique_ptr<JobManager> rocks_;
  std::unique_ptr<storage::pg::PgStore> pg_store_;   // PostgreSQL
  std::unique_ptr<PgJobManager> pg_;
  std::unique_ptr<watch::PgEventFeed> feed_;
  std::unique_ptr<watch::EventHub> hub_;
  JobBackend* manager_ = nullptr;  // whichever
  const storage::EventReader* reader_ = nullptr;
  std::unique_ptr<Runner> runner_;
};

TEST_P(JobManagerTest, RunsADemoJobWithDenseOrderedEvents) {
  StartRunner();
  auto job = Submit(Demo(R"({"steps": ["a", "b"], "step_ms": 100, "ticks": 2})"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), Job::QUEUED);
  EXPECT_EQ(job->last_sequence(), 1);
  testing::Drained events = Events(job->id());
  ASSERT_TRUE(events.status.ok()) << events.status;
  // Two PROGRESS per step, unless one found the one before it still unwritten and replaced
  // it (a slow store coalesces ticks, never a STEP): each step ends on its last tick.
  std::vector<std::string> shape;
  std::vector<const JobEvent*> steps, last_ticks;
  for (size_t i = 0; i < events.events.size(); ++i) {
    const JobEvent& e = events.events[i];
    EXPECT_EQ(e.sequence(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(e.status().last_sequence(), static_cast<int64_t>(i + 1));
    EXPECT_FALSE(e.status().has_params()) << "events carry no params";
    if (e.type() == JobEvent::STEP) steps.push_back(&e);
    if (e.type() != JobEvent::PROGRESS) {
      shape.push_back(JobEvent::Type_Name(e.type()));
    } else if (i + 1 == events.events.size() ||
               events.events[i + 1].type() != JobEvent::PROGRESS) {
      shape.push_back("PROGRESS+");
      last_ticks.push_back(&e);
    }
  }
  ASSERT_EQ(shape, (std::vector<std::string>{"CREATED", "STARTED", "STEP", "PROGRESS+", "STEP",
                                             "PROGRESS+", "SUCCEEDED"}));
  EXPECT_LE(events.events.size(), 9u);
  EXPECT_EQ(steps[1]->status().progress().step(), "b");
  EXPECT_EQ(steps[1]->status().progress().step_index(), 2);
  EXPECT_DOUBLE_EQ(last_ticks[0]->status().progress().fraction(), 0.5);
  EXPECT_EQ(last_ticks[1]->status().progress().message(), "b 2/2");
  EXPECT_DOUBLE_EQ(last_ticks[1]->status().progress().fraction(), 1.0);
  auto done = manager_->Get(job->id(), kAll);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), Job::SUCCEEDED);
  EXPECT_EQ(done->result().struct_value().fields().at("steps").number_value(), 2);
  EXPECT_EQ(done->params().fields().at("step_ms").number_value(), 100) << "GetStatus has params";
  EXPECT_EQ(done->attempt(), 1);
  EXPECT_TRUE(done->has_end_time());
}

TEST_P(JobManagerTest, RefusesBadSubmitsAndWritesNothing) {
  v1::SubmitRequest huge = Demo();
  (*huge.mutable_params()->mutable_fields())["blob"].set_string_value(std::string(2 << 20, 'x'));
  std::vector<std::pair<std::string, v1::SubmitRequest>> cases;
  cases.emplace_back("unknown job type \"nope\"; known types: demo.steps", [] {
    v1::SubmitRequest r; r.set_type("nope"); return r; }());
  cases.emplace_back("type is required", v1::SubmitRequest());
  cases.emplace_back("params is 2097", huge);
  cases.emplace_back("params.steps must be a list", Demo(R"({"steps": 5})"));
  cases.emplace_back("params.fail_at \"x\" is not one of the steps", Demo(R"({"fail_at": "x"})"));
  cases.emplace_back("params.colour is not a demo.steps parameter", Demo(R"({"colour": 1})"));
  cases.emplace_back("params.step_ms must be a whole number", Demo(R"({"step_ms": -1})"));
  cases.emplace_back("request_id \"a b\" must be printable ASCII", [] {
    auto r = Demo(); r.set_request_id("a b"); return r; }());
  cases.emplace_back("request_id has 200 characters", [] {
    auto r = Demo(); r.set_request_id(std::string(200, 'k')); return r; }());
  cases.emplace_back("label key \"Bad Key\"", [] {
    auto r = Demo(); (*r.mutable_labels())["Bad Key"] = "v"; return r; }());
  cases.emplace_back("priority 5000 is outside", [] {
    auto r = Demo(); r.set_priority(5000); return r; }());
  cases.emplace_back("max_attempts 101 is outside", [] {
    auto r = Demo(); r.set_max_attempts(101); return r; }());
  for (const auto& [message, request] : cases) {
    auto job = Submit(request);
    EXPECT_TRUE(absl::IsInvalidArgument(job.status())) << message << ": " << job.status();
    EXPECT_NE(job.status().message().find(message), std::string::npos)
        << "want \"" << message << "\" in: " << job.status().message();
  }
  EXPECT_EQ(ListedJobs(), 0u);
  ExpectNoLiveJobs("");
}

TEST_P(JobManagerTest, ConcurrentSubmitsWithOneRequestIdMakeOneJob) {
  v1::SubmitRequest request = Demo(R"({"step_ms": 0})");
  request.set_request_id("order-42");
  std::vector<std::string> ids(16);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      auto job = Submit(request);
      ids[i] = job.ok() ? job->id() : job.status().ToString();
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& id : ids) EXPECT_EQ(id, ids[0]);
  auto again = Submit(request);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), ids[0]);
  EXPECT_EQ(ListedJobs(), 1u);
}

TEST_P(JobManagerTest, CancelsQueuedAtOnceAndRunningThroughItsHandler) {
  StartRunner();
  v1::SubmitRequest later = Demo();
  later.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
  auto queued = Submit(later);
  ASSERT_TRUE(queued.ok());
  auto cancelled = Cancel(queued->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), Job::CANCELLED);
  EXPECT_EQ(Types(Events(queued->id())), (std::vector<std::string>{"CREATED", "CANCELLED"}));

  auto running = Submit(Demo(R"({"steps": ["long"], "step_ms": 60000})"));
  ASSERT_TRUE(running.ok());
  auto sub = hub_->WatchJob(running->id(), 0, kAll);
  ASSERT_TRUE(sub.ok());
  for (;;) {
    auto next = (*sub)->Poll();
    if (next.kind == watch::Subscription::Next::kSend && next.event->event.type() == JobEvent::STEP) break;
    std::this_thread::yield();
  }
  auto requested = Cancel(running->id());
  ASSERT_TRUE(requested.ok());
  EXPECT_TRUE(requested->cancel_requested());
  testing::Drained rest = testing::Drain(**sub, absl::Seconds(10));
  hub_->Unsubscribe(*sub);
  ASSERT_TRUE(rest.status.ok()) << rest.status;
  EXPECT_EQ(rest.events.back().type(), JobEvent::CANCELLED);
  EXPECT_EQ(rest.events.back().status().error().code(), static_cast<int>(absl::StatusCode::kCancelled));
  auto again = Cancel(running->id());
  ASSERT_TRUE(again.ok()) << "cancelling a cancelled job is a no-op";
  EXPECT_EQ(again->last_sequence(), rest.events.back().sequence());
}

TEST_P(JobManagerTest, RefusesIllegalTransitions) {
  StartRunner();
  auto slow = Submit(Demo(R"({"steps": ["long"], "step_ms": 60000, "ticks": 0})"));
  ASSERT_TRUE(slow.ok());
  while (manager_->Get(slow->id(), kAll)->state() != Job::RUNNING) std::this_thread::yield();
  absl::Status s = Delete(slow->id());
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("is RUNNING; cancel it first"), std::string::npos) << s;

  auto quick = Submit(Demo(R"({"step_ms": 0, "ticks": 0})"));
  ASSERT_TRUE(quick.ok());
  ASSERT_TRUE(Events(quick->id()).status.ok());
  auto cancel_done = Cancel(quick->id());
  EXPECT_TRUE(absl::IsFailedPrecondition(cancel_done.status())) << cancel_done.status();
  // Deleted the moment its end is seen, no ABORTED "is changing state": the manager lets go
  // of it before publishing the end, and a watcher that read the end from the store before
  // that publish finds Delete checking the stored record.
  const absl::Status deleted = Delete(quick->id());
  ASSERT_TRUE(deleted.ok()) << deleted;
  auto gone = manager_->Get(quick->id(), kAll);
  EXPECT_TRUE(absl::IsNotFound(gone.status()));
  EXPECT_NE(gone.status().message().find("was deleted at"), std::string::npos) << gone.status();
  EXPECT_TRUE(absl::IsNotFound(hub_->WatchJob(quick->id(), 0, kAll).status()));
  EXPECT_TRUE(absl::IsNotFound(Delete(quick->id())));
  EXPECT_TRUE(absl::IsInvalidArgument(Delete("not-an-id")));
  EXPECT_TRUE(absl::IsInvalidArgument(manager_->Get("", kAll).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(manager_->Get(std::string(5000, 'a'), kAll).status()));
  ASSERT_TRUE(Cancel(slow->id()).ok());
}

TEST_P(JobManagerTest, AStaleLeaseChangesNothing) {
  auto job = Submit(Demo(R"({"fail_at": "fetch", "retryable": true})"));
  ASSERT_TRUE(job.ok());
  std::optional<Attempt> first = manager_->Acquire({"demo.steps"});
  ASSERT_TRUE(first.has_value());
  manager_->Finish(*first, absl::UnavailableError("transient"));  // retried: attempt 2 next
  std::optional<Attempt> second = manager_->Acquire({"demo.steps"});
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->attempt, 2);
  manager_->Report(*first, Progress(0.9, "from the past"));
  manager_->Report(*first, Step("old", 1, 1, 0.5));
  manager_->Finish(*first, google::protobuf::Value());
  manager_->Finish(*second, google::protobuf::Value());
  testing::Drained events = Events(job->id());
  EXPECT_EQ(Types(events), (std::vector<std::string>{"CREATED", "STARTED", "RETRYING", "STARTED",
                                                      "SUCCEEDED"}));
  for (const JobEvent& e : events.events) {
    EXPECT_NE(e.status().progress().message(), "from the past");
    EXPECT_NE(e.status().progress().step(), "old");
  }
}

TEST_F(JobManagerTest, ASubmitThatCannotBeWrittenIsAnsweredWithTheError) {
  rocks_->committer().Stop();  // nothing more can be written
  auto plain = Submit(Demo());
  EXPECT_TRUE(absl::IsUnavailable(plain.status())) << plain.status();
  v1::SubmitRequest keyed = Demo();
  keyed.set_request_id("after-stop");
  auto with_key = Submit(keyed);
  EXPECT_TRUE(absl::IsUnavailable(with_key.status())) << with_key.status();
  EXPECT_EQ(rocks_->live_jobs(), 0u) << "nothing half-made is left behind";
}

TEST_P(JobManagerTest, AnOutcomeReachedAsTheServerStopsIsKept) {
  auto done = Submit(Demo());
  auto cancelled = Submit(Demo());
  auto interrupted = Submit(Demo());
  ASSERT_TRUE(done.ok() && cancelled.ok() && interrupted.ok());
  std::optional<Attempt> a = manager_->Acquire({"demo.steps"});
  std::optional<Attempt> b = manager_->Acquire({"demo.steps"});
  std::optional<Attempt> c = manager_->Acquire({"demo.steps"});
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(Cancel(b->job_id).ok());
  manager_->StopRunning();  // the server begins to stop while all three are running
  manager_->Finish(*a, google::protobuf::Value());               // it had finished its work
  manager_->Finish(*b, absl::CancelledError("cancelled"));        // it obeyed the cancel
  manager_->Finish(*c, absl::CancelledError("server stopping"));  // it was cut short
  Flush();
  EXPECT_EQ(Types(Events(a->job_id)).back(), "SUCCEEDED") << "finished work is not redone";
  EXPECT_EQ(Types(Events(b->job_id)).back(), "CANCELLED") << "a cancel is not undone";
  // PostgreSQL's run writer may still be writing c's end (Flush waits only for RocksDB's
  // committer): read until it has moved off RUNNING.
  auto requeued = manager_->Get(c->job_id, kAll);
  for (int i = 0; i < 500 && requeued.ok() && requeued->state() == Job::RUNNING; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    requeued = manager_->Get(c->job_id, kAll);
  }
  ASSERT_TRUE(requeued.ok());
  EXPECT_EQ(requeued->state(), Job::QUEUED);
  EXPECT_EQ(requeued->attempt(), 0) << "an interrupted attempt does not count";
}

TEST_P(JobManagerTest, RetryableFailuresRetryUntilAttemptsRunOut) {
  StartRunner();
  v1::SubmitRequest request = Demo(R"({"fail_at": "render", "retryable": true, "step_ms": 0})");
  request.set_max_attempts(2);
  auto job = Submit(request);
  ASSERT_TRUE(job.ok());
  testing::Drained events = Events(job->id());
  std::vector<std::string> types = Types(events);
  EXPECT_EQ(std::count(types.begin(), types.end(), "STARTED"), 2);
  EXPECT_EQ(std::count(types.begin(), types.end(), "RETRYING"), 1);
  EXPECT_EQ(types.back(), "FAILED");
  const Job& last = events.events.back().status();
  EXPECT_EQ(last.attempt(), 2);
  EXPECT_EQ(last.error().code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(last.error().message(), "step \"render\" failed (fail_at)");
}

TEST_P(JobManagerTest, RecoveryRetriesOrFailsJobsThatWereRunning) {
  v1::SubmitRequest retried = Demo(R"({"step_ms": 0})");
  v1::SubmitRequest last_try = Demo(R"({"step_ms": 0})");
  last_try.set_max_attempts(1);
  auto a = Submit(retried);
  auto b = Submit(last_try);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(manager_->Acquire({"demo.steps"}).has_value());
  ASSERT_TRUE(manager_->Acquire({"demo.steps"}).has_value());
  Close();  // both were RUNNING and nothing finished them
  Open();
  auto a_now = manager_->Get(a->id(), kAll);
  auto b_now = manager_->Get(b->id(), kAll);
  ASSERT_TRUE(a_now.ok() && b_now.ok());
  EXPECT_EQ(a_now->state(), Job::QUEUED);
  EXPECT_EQ(b_now->state(), Job::FAILED);
  EXPECT_NE(b_now->error().message().find("the server stopped while attempt 1 was running"),
            std::string::npos)
      << b_now->error().message();
  StartRunner();
  testing::Drained events = Events(a->id());
  EXPECT_EQ(Types(events).front(), "CREATED");
  EXPECT_EQ(Types(events)[2], "RETRYING");
  EXPECT_EQ(Types(events).back(), "SUCCEEDED");
  EXPECT_EQ(events.events.back().status().attempt(), 2);
  EXPECT_EQ(Types(Events(b->id())), (std::vector<std::string>{"CREATED", "STARTED", "FAILED"}));
}

TEST_P(JobManagerTest, HeavyProgressIsCoalescedButSequencesStayDense) {
  auto job = Submit(Demo());
  ASSERT_TRUE(job.ok());
  std::optional<Attempt> lease = manager_->Acquire({"demo.steps"});
  ASSERT_TRUE(lease.has_value());
  constexpr int kReports = 5000;
  const uint64_t groups_before = rocks_ ? rocks_->committer().groups_written() : 0;
  for (int i = 1; i <= kReports; ++i) manager_->Report(*lease, Progress(i / 5000.0, absl::StrCat("p", i)));
  manager_->Finish(*lease, google::protobuf::Value());
  ASSERT_TRUE(Events(job->id()).status.ok());  // to the end
  const std::vector<JobEvent> stored = StoredEvents(job->id());
  for (size_t i = 0; i < stored.size(); ++i) {
    ASSERT_EQ(stored[i].sequence(), static_cast<int64_t>(i + 1)) << "stored events are dense";
  }
  const auto progress_events = std::count_if(stored.begin(), stored.end(), [](const JobEvent& e) {
    return e.type() == JobEvent::PROGRESS;
  });
  if (rocks_) {
    // How many reports get replaced depends on how fast the disk syncs (on a RAM disk the
    // committer keeps up with most of them); what holds anywhere is that a job never has
    // more than one PROGRESS waiting, so no group sync writes two of them. Without the
    // replacing, 5,000 reports would go out in a handful of 1,024-write groups.
    const uint64_t groups = rocks_->committer().groups_written() - groups_before;
    EXPECT_LE(static_cast<uint64_t>(progress_events), groups)
        << "more PROGRESS events written than synced groups: progress was not coalesced";
  } else {
    // The run writers write a transaction (a round trip to PostgreSQL) at a time, far
    // slower than a report.
    EXPECT_LT(stored.size(), 1000u) << "progress was not coalesced";
  }
  const JobEvent& last_progress = stored[stored.size() - 2];
  EXPECT_EQ(last_progress.type(), JobEvent::PROGRESS);
  EXPECT_EQ(last_progress.status().progress().message(), "p5000") << "the newest one survives";
}

TEST_P(JobManagerTest, RetentionExpiresFinishedJobsThenTheirTombstones) {
  StartRunner();
  auto job = Submit(Demo(R"({"step_ms": 0, "ticks": 0})"));
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(Events(job->id()).status.ok());
  auto keeper = Submit(Demo(R"({"steps": ["long"], "step_ms": 60000, "ticks": 0})"));
  ASSERT_TRUE(keeper.ok());
  ASSERT_TRUE(manager_->Sweep(absl::Now()).ok());
  EXPECT_TRUE(manager_->Get(job->id(), kAll).ok()) << "not expired yet";
  const absl::Time later = absl::Now() + absl::Hours(168) + absl::Minutes(1);
  ASSERT_TRUE(manager_->Sweep(later).ok());
  auto expired = manager_->Get(job->id(), kAll);
  EXPECT_TRUE(absl::IsNotFound(expired.status()));
  EXPECT_NE(expired.status().message().find("was expired at"), std::string::npos) << expired.status();
  EXPECT_TRUE(StoredEvents(job->id()).empty()) << "events went with it";
  EXPECT_TRUE(manager_->Get(keeper->id(), kAll).ok()) << "live jobs never expire";
  ASSERT_TRUE(manager_->Sweep(later + absl::Hours(169)).ok());
  auto forgotten = manager_->Get(job->id(), kAll);
  EXPECT_NE(forgotten.status().message().find("no job with id"), std::string::npos);
  ASSERT_TRUE(Cancel(keeper->id()).ok());
}

TEST_P(JobManagerTest, ListsNewestFirstInPagesAndRejectsBadTokens) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::SubmitRequest r = Demo();
    r.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    (*r.mutable_labels())["parity"] = i % 2 ? "odd" : "even";
    auto job = Submit(r);
    ASSERT_TRUE(job.ok());
    ids.insert(ids.begin(), job->id());
    absl::SleepFor(absl::Milliseconds(2));  // distinct creation milliseconds
  }
  std::vector<std::string> listed;
  v1::ListJobsRequest request;
  request.set_page_size(2);
  int pages = 0;
  do {
    auto page = manager_->List(request, kAll);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const Job& j : page->jobs()) {
      listed.push_back(j.id());
      EXPECT_FALSE(j.has_params());
    }
    request.set_page_token(page->next_page_token());
    ++pages;
  } while (!request.page_token().empty() && pages < 10);
  EXPECT_EQ(listed, ids);
  v1::ListJobsRequest odd;
  (*odd.mutable_labels())["parity"] = "odd";
  EXPECT_EQ(manager_->List(odd, kAll)->jobs_size(), 2);
  v1::ListJobsRequest bad;
  bad.set_page_token("garbage!");
  EXPECT_TRUE(absl::IsInvalidArgument(manager_->List(bad, kAll).status()));
  bad.set_page_token("");
  bad.set_page_size(-1);
  EXPECT_TRUE(absl::IsInvalidArgument(manager_->List(bad, kAll).status()));
  bad.set_page_size(0);
  bad.add_states(Job::STATE_UNSPECIFIED);
  EXPECT_TRUE(absl::IsInvalidArgument(manager_->List(bad, kAll).status()));
}

TEST_P(JobManagerTest, PurgeRemovesOnlyJobsFinishedBefore) {
  StartRunner();
  auto old_job = Submit(Demo(R"({"step_ms": 0, "ticks": 0})"));
  ASSERT_TRUE(old_job.ok());
  ASSERT_TRUE(Events(old_job->id()).status.ok());
  const absl::Time cut = absl::Now();
  absl::SleepFor(absl::Milliseconds(5));
  auto new_job = Submit(Demo(R"({"step_ms": 0, "ticks": 0})"));
  ASSERT_TRUE(new_job.ok());
  ASSERT_TRUE(Events(new_job->id()).status.ok());
  absl::Notification done;
  absl::StatusOr<int64_t> purged;
  manager_->Purge(cut, [&](absl::StatusOr<int64_t> n) {
    purged = n;
    done.Notify();
  });
  done.WaitForNotification();
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1);
  EXPECT_TRUE(absl::IsNotFound(manager_->Get(old_job->id(), kAll).status()));
  EXPECT_TRUE(manager_->Get(new_job->id(), kAll).ok());
}

JOBSTREAM_BOTH_STORES(JobManagerTest);

}  // namespace
}  // namespace jobstream::jobs

namespace jobstream::jobs {
namespace {

// A deep queue: jobs of EXTERNAL types wait in the store, not in memory.
class DeepQueueTest : public JobManagerTest {
 protected:
  void SetUp() override {
    JobManagerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    Close();
    v1::ServerConfig config;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                    R"({"types": [{"name": "mail", "external": {}},
                                  {"name": "sms", "external": {}}]})",
                    &config)
                    .ok());
    auto types = JobTypes::FromConfig(config);
    ASSERT_TRUE(types.ok()) << types.status();
    types_ = std::make_unique<JobTypes>(*std::move(types));
    Open();
  }
  Job SubmitOf(const std::string& type, int n, int priority = 0) {
    v1::SubmitRequest request;
    request.set_type(type);
    (*request.mutable_params()->mutable_fields())["n"].set_number_value(n);
    request.set_priority(priority);
    auto job = Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  v1::LeaseJobResponse Lease(const std::vector<std::string>& types, int max_jobs) {
    v1::LeaseJobRequest request;
    for (const auto& t : types) request.add_types(t);
    request.set_max_jobs(max_jobs);
    absl::Notification done;
    absl::StatusOr<v1::LeaseJobResponse> result;
    manager_->LeaseJobs(request, "test", kAll, [&](absl::StatusOr<v1::LeaseJobResponse> r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : v1::LeaseJobResponse();
  }
  absl::StatusOr<Job> Complete(const std::string& lease_id) {
    absl::Notification done;
    absl::StatusOr<Job> result;
    v1::CompleteJobRequest request;
    request.set_lease_id(lease_id);
    manager_->CompleteWork(request, kAll, [&](absl::StatusOr<Job> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  absl::StatusOr<Job> Fail(const std::string& lease_id) {
    absl::Notification done;
    absl::StatusOr<Job> result;
    v1::FailJobRequest request;
    request.set_lease_id(lease_id);
    request.mutable_error()->set_message("no");
    manager_->FailWork(request, kAll, [&](absl::StatusOr<Job> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  // Every job ListJobs gives for `request`, page by page (3 a page).
  std::vector<std::string> ListAll(v1::ListJobsRequest request) {
    std::vector<std::string> ids;
    request.set_page_size(3);
    for (int pages = 0; pages < 100; ++pages) {
      auto page = manager_->List(request, kAll);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      for (const Job& job : page->jobs()) ids.push_back(job.id());
      if (page->next_page_token().empty()) break;
      request.set_page_token(page->next_page_token());
    }
    return ids;
  }
};

TEST_P(DeepQueueTest, QueuedJobsLeaveMemoryOnceWrittenAndAreReadBackToStart) {
  std::vector<Job> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(SubmitOf("mail", i, i % 3));
  ExpectNoLiveJobs("committed queued jobs are not held in memory");
  // A job nobody held is watched from the store, then live.
  auto sub = hub_->WatchJob(jobs[5].id(), 0, kAll);
  ASSERT_TRUE(sub.ok());
  // Cancel and delete find a queued job in the store.
  auto cancelled = Cancel(jobs[0].id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), Job::CANCELLED);
  EXPECT_EQ(Delete(jobs[1].id()).code(), absl::StatusCode::kFailedPrecondition);

  v1::LeaseJobResponse leased = Lease({"mail"}, 1000);
  ASSERT_EQ(leased.jobs_size(), 199);
  int last_priority = 2;
  for (const v1::LeasedJob& j : leased.jobs()) {
    EXPECT_LE(j.job().priority(), last_priority) << "highest priority first";
    last_priority = j.job().priority();
    const int n = static_cast<int>(j.job().params().fields().at("n").number_value());
    EXPECT_EQ(j.job().id(), jobs[n].id()) << "its own params, read back from the store";
  }
  for (const v1::LeasedJob& j : leased.jobs()) ASSERT_TRUE(Complete(j.lease_id()).ok());
  testing::Drained watched = testing::Drain(**sub);
  hub_->Unsubscribe(*sub);
  EXPECT_EQ(Types(watched), (std::vector<std::string>{"CREATED", "STARTED", "SUCCEEDED"}));
  ExpectNoLiveJobs("");
}

TEST_P(DeepQueueTest, AWatchJobsSnapshotListsQueuedJobsFromTheIndex) {
  std::vector<Job> jobs;
  for (int i = 0; i < 30; ++i) jobs.push_back(SubmitOf(i % 3 ? "mail" : "sms", i));
  ExpectNoLiveJobs("none of them is held in memory");
  // The snapshot events a new WatchJobs starts with.
  auto snapshot = [](watch::EventHub& hub, watch::JobFilter filter) {
    auto sub = hub.WatchJobs(std::move(filter));
    EXPECT_TRUE(sub.ok());
    std::vector<std::string> ids;
    for (;;) {
      auto next = (*sub)->Poll();
      if (next.kind != watch::Subscription::Next::kSend) break;
      EXPECT_EQ(next.event->event.type(), JobEvent::SNAPSHOT);
      EXPECT_EQ(next.event->event.status().state(), Job::QUEUED);
      ids.push_back(next.event->event.job_id());
    }
    hub.Unsubscribe(*sub);
    return ids;
  };
  EXPECT_EQ(snapshot(*hub_, {}).size(), 30u);
  watch::JobFilter sms;
  sms.types.insert("sms");
  EXPECT_EQ(snapshot(*hub_, sms).size(), 10u);
  watch::JobFilter running;
  running.states.insert(Job::RUNNING);
  EXPECT_TRUE(snapshot(*hub_, running).empty());
  // Past the limit: the newest queued jobs.
  watch::WatchOptions small;
  small.snapshot_queued_limit = 4;
  watch::EventHub limited(reader_, small);
  EXPECT_EQ(snapshot(limited, {}), (std::vector<std::string>{jobs[29].id(), jobs[28].id(),
                                                             jobs[27].id(), jobs[26].id()}));
}

TEST_P(DeepQueueTest, ARestartKeepsTheQueueAndItsOrder) {
  std::vector<Job> jobs;
  for (int i = 0; i < 50; ++i) jobs.push_back(SubmitOf(i % 2 ? "mail" : "sms", i, i % 5));
  Close();
  Open();
  auto types = manager_->ListTypes(auth::Scope::Everything());
  int64_t queued = 0;
  for (const auto& t : types.types()) queued += t.queued();
  EXPECT_EQ(queued, 50);
  ExpectNoLiveJobs("");
  v1::LeaseJobResponse leased = Lease({"mail", "sms"}, 100);
  ASSERT_EQ(leased.jobs_size(), 50);
  for (int i = 1; i < 50; ++i) {
    EXPECT_GE(leased.jobs(i - 1).job().priority(), leased.jobs(i).job().priority());
  }
}

TEST_P(DeepQueueTest, ListJobsByStateAndTypeFollowsEveryTransition) {
  std::vector<Job> mail, sms;
  for (int i = 0; i < 10; ++i) {
    mail.push_back(SubmitOf("mail", i));
    sms.push_back(SubmitOf("sms", i));
  }
  v1::LeaseJobResponse leased = Lease({"mail"}, 4);  // mail[0..3] RUNNING
  ASSERT_EQ(leased.jobs_size(), 4);
  ASSERT_TRUE(Complete(leased.jobs(0).lease_id()).ok());  // SUCCEEDED
  ASSERT_TRUE(Complete(leased.jobs(1).lease_id()).ok());  // SUCCEEDED
  ASSERT_TRUE(Fail(leased.jobs(2).lease_id()).ok());      // FAILED (not retryable)
  ASSERT_TRUE(Cancel(sms[0].id()).ok());
  ASSERT_TRUE(Cancel(sms[1].id()).ok());

  // The truth, from the record of every job (creation order, newest first).
  std::vector<Job> all;
  for (const std::string& id : ListAll({})) all.push_back(*manager_->Get(id, kAll));
  ASSERT_EQ(all.size(), 20u);
  auto expect = [&](std::vector<Job::State> states, const std::string& type) {
    std::vector<std::string> want;
    for (const Job& job : all) {
      bool state_ok = states.empty() || std::count(states.begin(), states.end(), job.state());
      if (state_ok && (type.empty() || job.type() == type)) want.push_back(job.id());
    }
    v1::ListJobsRequest request;
    for (Job::State s : states) request.add_states(s);
    request.set_type(type);
    return std::make_pair(want, ListAll(request));
  };
  for (const auto& [states, type] : std::vector<std::pair<std::vector<Job::State>, std::string>>{
           {{Job::QUEUED}, ""},
           {{Job::RUNNING}, ""},
           {{Job::SUCCEEDED, Job::FAILED}, ""},
           {{Job::CANCELLED, Job::QUEUED}, "sms"},
           {{}, "mail"},
           {{Job::RUNNING, Job::SUCCEEDED}, "mail"},
           {{Job::QUEUED}, "mail"}}) {
    auto [want, got] = expect(states, type);
    EXPECT_EQ(got, want) << type << " " << states.size();
    EXPECT_FALSE(want.empty());
  }
  EXPECT_EQ(expect({Job::RUNNING}, "").first.size(), 1u);
  // Removal leaves no index entry behind.
  ASSERT_TRUE(Delete(sms[0].id()).ok());
  v1::ListJobsRequest cancelled;
  cancelled.add_states(Job::CANCELLED);
  EXPECT_EQ(ListAll(cancelled), std::vector<std::string>{sms[1].id()});
}

TEST_F(DeepQueueTest, AStaleQueueEntryIsDroppedNotStarted) {
  Job done = SubmitOf("mail", 1);
  ASSERT_TRUE(Cancel(done.id()).ok());
  Job waiting = SubmitOf("mail", 2);
  Close();
  // As an older version could leave behind: a queue entry of a job that has moved on.
  const std::string stale = storage::QueueKey("mail", "", 0, 1, done.id());
  {
    auto store = storage::JobStore::Open(dir_.path());
    ASSERT_TRUE(store.ok());
    storage::Batch batch;
    batch.Put(storage::Cf::kQueue, stale, "");
    ASSERT_TRUE((*store)->Write(batch, true).ok());
  }
  Open();
  v1::LeaseJobResponse leased = Lease({"mail"}, 10);
  ASSERT_EQ(leased.jobs_size(), 1);
  EXPECT_EQ(leased.jobs(0).job().id(), waiting.id());
  EXPECT_EQ(manager_->Get(done.id(), kAll)->state(), Job::CANCELLED) << "not started again";
  Close();
  Open();
  EXPECT_EQ(manager_->ListTypes(auth::Scope::Everything()).types(1).queued(), 0) << "and the entry is gone for good";
}

TEST_F(DeepQueueTest, IndexesAreBuiltForAStoreThatHadNone) {
  for (int i = 0; i < 7; ++i) SubmitOf("mail", i);
  Close();
  {  // As a store written before the indexes existed.
    auto store = storage::JobStore::Open(dir_.path());
    ASSERT_TRUE(store.ok());
    storage::Batch wipe;
    wipe.DeleteRange(storage::Cf::kByState, "", std::string(64, '\xff'));
    wipe.DeleteRange(storage::Cf::kByTypeState, "", std::string(64, '\xff'));
    wipe.DeleteRange(storage::Cf::kMeta, "", std::string(64, '\xff'));
    ASSERT_TRUE((*store)->Write(wipe, true).ok());
  }
  Open();
  v1::ListJobsRequest queued;
  queued.add_states(Job::QUEUED);
  EXPECT_EQ(ListAll(queued).size(), 7u);
  queued.set_type("mail");
  EXPECT_EQ(ListAll(queued).size(), 7u);
}

JOBSTREAM_BOTH_STORES(DeepQueueTest);

}  // namespace
}  // namespace jobstream::jobs
