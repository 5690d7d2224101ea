// Two servers' managers on one real PostgreSQL, each with its own hub, feed and runners:
// every job runs once, whichever server takes it; a watcher on either server sees every
// event; request_id, cancel and tenants hold across servers.
#include "server/jobs/pg_manager.h"

#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/runner.h"
#include "server/jobs/transitions.h"
#include "server/watch/pg_event_feed.h"
#include "tests/support/drain.h"
#include "tests/support/job_helpers.h"
#include "tests/support/pg_test.h"

namespace jobstream::jobs {
namespace {

using testing::DemoSteps;
using v1::Job;
using v1::JobEvent;

using testing::kAll;

// One server: store, hub, feed, manager and runners.
struct Server {
  Server(const std::string& url, const JobTypes* types, const std::string& id,
         int runner_threads = 2)
      : leader(url, storage::pg::kChoresLock) {
    auto opened = storage::pg::PgStore::Open(url, 6);
    EXPECT_TRUE(opened.ok()) << opened.status();
    store = *std::move(opened);
    hub = std::make_unique<watch::EventHub>(store.get(), watch::WatchOptions());
    PgManagerOptions options;
    options.server_id = id;
    options.leader = &leader;
    manager = std::make_unique<PgJobManager>(store.get(), types, options);
    feed = std::make_unique<watch::PgEventFeed>(url, store.get(), hub.get());
    feed->SetObserver([this](const JobEvent& e) { manager->Observe(e); });
    EXPECT_TRUE(feed->Start().ok());
    runner = std::make_unique<Runner>(manager.get(), types, runner_threads);
    runner->Start();
  }
  ~Server() {
    runner->Stop();
    manager->Stop();
    feed->Stop();
    hub->Close(absl::UnavailableError("test over"));
  }
  absl::StatusOr<Job> Submit(const v1::SubmitRequest& request, const auth::Scope& scope = kAll) {
    absl::StatusOr<Job> result = absl::UnknownError("no answer");
    absl::Notification answered;
    manager->Submit(request, scope, [&](absl::StatusOr<Job> job) {
      result = std::move(job);
      answered.Notify();
    });
    answered.WaitForNotification();
    return result;
  }
  absl::StatusOr<Job> Cancel(const std::string& id, const auth::Scope& scope = kAll) {
    absl::StatusOr<Job> result = absl::UnknownError("no answer");
    absl::Notification answered;
    manager->Cancel(id, scope, [&](absl::StatusOr<Job> job) {
      result = std::move(job);
      answered.Notify();
    });
    answered.WaitForNotification();
    return result;
  }
  storage::pg::PgLeader leader;
  std::unique_ptr<storage::pg::PgStore> store;
  std::unique_ptr<watch::EventHub> hub;
  std::unique_ptr<PgJobManager> manager;
  std::unique_ptr<watch::PgEventFeed> feed;
  std::unique_ptr<Runner> runner;
};

class PgManagerTest : public testing::PgTest {
 protected:
  void SetUp() override {
    testing::PgTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto types = JobTypes::FromConfig({});
    ASSERT_TRUE(types.ok());
    types_ = std::make_unique<JobTypes>(*std::move(types));
  }
  std::unique_ptr<JobTypes> types_;
};

TEST_F(PgManagerTest, TwoServersRunEveryJobOnceAndAWatcherOnEitherSeesItAll) {
  const std::string url = NewDatabase();
  Server a(url, types_.get(), "server-a"), b(url, types_.get(), "server-b");
  constexpr int kJobs = 60;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i) {
    auto job = (i % 2 ? b : a).Submit(DemoSteps(2, 30));
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), Job::QUEUED);
    EXPECT_EQ(job->params().fields().at("ticks").number_value(), 2);
    ids.push_back(job->id());
  }
  // A watcher on b of a job submitted through a.
  auto sub = b.hub->WatchJob(ids[0], 0, kAll);
  ASSERT_TRUE(sub.ok()) << sub.status();
  testing::Drained watched = testing::Drain(**sub);
  b.hub->Unsubscribe(*sub);
  EXPECT_TRUE(watched.status.ok()) << watched.status;
  for (size_t i = 0; i < watched.events.size(); ++i) {
    EXPECT_EQ(watched.events[i].sequence(), int64_t(i + 1));
  }
  ASSERT_FALSE(watched.events.empty());
  EXPECT_EQ(watched.events.back().type(), JobEvent::SUCCEEDED);

  std::set<std::string> runners;
  for (const std::string& id : ids) {
    absl::StatusOr<Job> job = a.manager->Get(id, kAll);
    for (const absl::Time deadline = absl::Now() + absl::Seconds(60);
         job.ok() && job->state() != Job::SUCCEEDED && absl::Now() < deadline;
         job = a.manager->Get(id, kAll)) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), Job::SUCCEEDED) << id;
    EXPECT_EQ(job->attempt(), 1) << id;
    const std::vector<JobEvent> events = EventsOf(*a.store, id, 0, 1000);
    int started = 0;
    for (const JobEvent& e : events) {
      if (e.type() != JobEvent::STARTED) continue;
      ++started;
      runners.insert(e.status().worker_id());
    }
    EXPECT_EQ(started, 1) << id;  // run once, by one server
  }
  EXPECT_EQ(runners, (std::set<std::string>{"server-a", "server-b"}));
  auto types = b.manager->ListTypes(auth::Scope::Everything());
  ASSERT_EQ(types.types_size(), 1);
  EXPECT_EQ(types.types(0).queued(), 0);
  EXPECT_EQ(types.types(0).running(), 0);
}

TEST_F(PgManagerTest, RequestIdsCancelsAndTenantsHoldAcrossServers) {
  const std::string url = NewDatabase();
  Server a(url, types_.get(), "server-a"), b(url, types_.get(), "server-b");
  auth::Scope acme{"acme", false};
  auth::Scope globex{"globex", false};

  v1::SubmitRequest later = DemoSteps(1, 10);
  later.set_request_id("order-7");
  *later.mutable_run_at() = v1::ToProto(absl::Now() + absl::Hours(1));
  auto first = a.Submit(later, acme);
  auto twin = b.Submit(later, acme);
  ASSERT_TRUE(first.ok() && twin.ok()) << first.status() << " " << twin.status();
  EXPECT_EQ(first->id(), twin->id());
  auto other_tenant = b.Submit(later, globex);
  ASSERT_TRUE(other_tenant.ok());
  EXPECT_NE(other_tenant->id(), first->id());

  // Another tenant's job does not exist for it — the same answer as an id never used.
  auto hidden = b.manager->Get(first->id(), globex);
  auto never = b.manager->Get("01m84yhe3ccaxdqtgds5yds0mn", globex);
  EXPECT_EQ(hidden.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(
      hidden.status().message(),
      std::string(never.status().message())
          .replace(never.status().message().find("01m84yhe3ccaxdqtgds5yds0mn"), 26, first->id()));
  EXPECT_EQ(b.Cancel(first->id(), globex).status().code(), absl::StatusCode::kNotFound);

  // Cancelled through b, seen through a, with its event.
  auto cancelled = b.Cancel(first->id(), acme);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), Job::CANCELLED);
  EXPECT_EQ(a.manager->Get(first->id(), acme)->state(), Job::CANCELLED);
  const std::vector<JobEvent> events = EventsOf(*a.store, first->id(), 0, 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type(), JobEvent::CANCELLED);
  // Again: answered as it stands; a finished job cannot be.
  EXPECT_EQ(a.Cancel(first->id(), acme)->state(), Job::CANCELLED);

  // A running job cancelled through the server that does not run it still stops.
  auto running = a.Submit(DemoSteps(20, 60000), acme);
  ASSERT_TRUE(running.ok());
  absl::StatusOr<Job> now = a.manager->Get(running->id(), acme);
  for (const absl::Time deadline = absl::Now() + absl::Seconds(20);
       now.ok() && now->state() != Job::RUNNING && absl::Now() < deadline;
       now = a.manager->Get(running->id(), acme)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(now->state(), Job::RUNNING);
  Server& other = now->worker_id() == "server-a" ? b : a;
  ASSERT_TRUE(other.Cancel(running->id(), acme).ok());
  for (const absl::Time deadline = absl::Now() + absl::Seconds(20);
       now.ok() && now->state() != Job::CANCELLED && absl::Now() < deadline;
       now = a.manager->Get(running->id(), acme)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(now->state(), Job::CANCELLED);
}

TEST_F(PgManagerTest, AWaitOnOneServerIsAnsweredWhenAnotherFinishesTheJob) {
  const std::string url = NewDatabase();
  // b runs nothing: a finishes what b waits on.
  Server a(url, types_.get(), "server-a"), b(url, types_.get(), "server-b", 0);
  auth::Scope acme{"acme", false};
  auto wait_on = [&](Server& s, const std::string& id, absl::Duration timeout,
                     const auth::Scope& scope) {
    auto answered = std::make_shared<absl::Notification>();
    auto result = std::make_shared<absl::StatusOr<Job>>(absl::UnknownError("no answer"));
    auto wait = s.manager->WaitJob(id, scope, timeout, [=](absl::StatusOr<Job> job) {
      *result = std::move(job);
      answered->Notify();
    });
    return std::make_tuple(answered, result, wait);
  };
  auto job = b.Submit(DemoSteps(2, 100), acme);
  ASSERT_TRUE(job.ok());
  const absl::Time start = absl::Now();
  auto [done, result, wait] = wait_on(b, job->id(), absl::Seconds(30), acme);
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(20)));
  ASSERT_TRUE(result->ok()) << result->status();
  EXPECT_EQ((*result)->state(), Job::SUCCEEDED);
  EXPECT_EQ((*result)->worker_id(), "server-a");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  // A job that will not finish in time: answered as it stands when the timeout passes.
  v1::SubmitRequest later = DemoSteps(1, 10);
  *later.mutable_run_at() = v1::ToProto(absl::Now() + absl::Hours(1));
  auto queued = a.Submit(later, acme);
  ASSERT_TRUE(queued.ok());
  const absl::Time asked = absl::Now();
  auto [done2, result2, wait2] = wait_on(b, queued->id(), absl::Milliseconds(300), acme);
  ASSERT_TRUE(done2->WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ((*result2)->state(), Job::QUEUED);
  EXPECT_GE(absl::Now() - asked, absl::Milliseconds(300));
  EXPECT_LT(absl::Now() - asked, absl::Milliseconds(900));

  // Abandoned: CANCELLED. Bad timeout, other tenant: answered at once.
  auto [done3, result3, wait3] = wait_on(b, queued->id(), absl::Seconds(30), acme);
  ASSERT_NE(wait3, nullptr);
  b.manager->AbandonJobWait(wait3);
  ASSERT_TRUE(done3->HasBeenNotified());
  EXPECT_EQ(result3->status().code(), absl::StatusCode::kCancelled);
  auto [done4, result4, wait4] = wait_on(b, queued->id(), absl::Minutes(6), acme);
  EXPECT_EQ(result4->status().code(), absl::StatusCode::kInvalidArgument);
  auto [done5, result5, wait5] =
      wait_on(b, queued->id(), absl::Seconds(30), auth::Scope{"globex", false});
  EXPECT_EQ(wait5, nullptr);
  EXPECT_EQ(result5->status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PgManagerTest, AJobWhoseServerDiedMidRunIsRetriedByAnother) {
  const std::string url = NewDatabase();
  // A server takes a job and dies: its lease is never renewed.
  auto dead = storage::pg::PgStore::Open(url, 1);
  ASSERT_TRUE(dead.ok()) << dead.status();
  const absl::Time now = absl::Now();
  const JobType& type = *types_->Find("demo.steps");
  JobEvent created;
  created.set_type(JobEvent::CREATED);
  const v1::SubmitRequest request = DemoSteps(2, 30);
  auto job = (*dead)->InsertJob(NewJob(request, type, "", now), request.params(), created);
  ASSERT_TRUE(job.ok()) << job.status();
  auto claimed = (*dead)->ClaimLeased(
      {"demo.steps"}, absl::ToUnixMillis(now), 1,
      [&](Job& j, std::vector<JobEvent>& out, size_t) -> absl::StatusOr<storage::LeaseRecord> {
        storage::LeaseRecord lease =
            StartJob(j, type, now, "server-dead", "lease-of-the-dead", absl::Milliseconds(300));
        JobEvent started;
        started.set_type(JobEvent::STARTED);
        out.push_back(started);
        return lease;
      });
  ASSERT_TRUE(claimed.ok() && claimed->size() == 1u) << claimed.status();

  Server b(url, types_.get(), "server-b");
  // b leads the chores: it expires the lease; the job is retried, and runs on b.
  const std::string id = job->job.id();
  absl::StatusOr<Job> seen = b.manager->Get(id, kAll);
  for (const absl::Time deadline = absl::Now() + absl::Seconds(20);
       seen.ok() && seen->state() != Job::SUCCEEDED && absl::Now() < deadline;
       seen = b.manager->Get(id, kAll)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state(), Job::SUCCEEDED);
  EXPECT_EQ(seen->attempt(), 2);
  const std::vector<JobEvent> events = EventsOf(*b.store, id, 0, 1000);
  std::vector<std::string> story;
  for (size_t i = 0; i < events.size(); ++i) {
    const JobEvent& e = events[i];
    EXPECT_EQ(e.sequence(), int64_t(i + 1));
    if (e.type() == JobEvent::STARTED) story.push_back("STARTED by " + e.status().worker_id());
    if (e.type() == JobEvent::RETRYING) {
      story.push_back("RETRYING: " + e.status().error().message());
    }
    if (e.type() == JobEvent::SUCCEEDED) story.push_back("SUCCEEDED");
  }
  EXPECT_EQ(story, (std::vector<std::string>{
                       "STARTED by server-dead",
                       "RETRYING: lease expired: worker \"server-dead\" reported nothing for 300ms",
                       "STARTED by server-b", "SUCCEEDED"}));
}

}  // namespace
}  // namespace jobstream::jobs
