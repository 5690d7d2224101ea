// Several servers on one PostgreSQL, as processes: any server answers for any job, work is
// spread without being done twice, a dead server's jobs carry on elsewhere, and a restart of
// PostgreSQL itself loses nothing acknowledged; one server fires schedules, and when it
// dies another fires every fire time it left; when the server counting a batch dies, another
// counts every child once.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/schedules.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/job_helpers.h"
#include "tests/support/pg_test.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::JobClient;
using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

using testing::SubmitRequestOf;
using testing::WatchOnce;

class ScaleOutTest : public testing::PgTest {
 protected:
  void SetUp() override {
    testing::PgTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    url_ = NewDatabase();
    std::ofstream(dir_.sub("config.json")) << R"({"types": [
      {"name": "demo.steps", "builtin": {}},
      {"name": "ext", "external": {"leaseDuration": "2s"}},
      {"name": "keyed", "external": {"leaseDuration": "10s"}, "keyConcurrency": 2}]})";
  }
  // Server `name` on the test's database.
  std::unique_ptr<ServerProcess> Start(const std::string& name,
                                       std::vector<std::string> flags = {}) {
    flags.push_back("--store=" + url_);
    flags.push_back("--server_id=" + name);
    flags.push_back("--config=" + dir_.sub("config.json"));
    flags.push_back("--retry_backoff=0s");
    flags.push_back("--run_lease=2s");
    flags.push_back("--log=false");
    return std::make_unique<ServerProcess>(dir_.sub(name), flags);
  }

  testing::TempDir dir_;
  std::string url_;
};

TEST_F(ScaleOutTest, SubmitOnOneWatchOnTheOtherAnd32WorkersDo2000JobsExactlyOnce) {
  std::vector<std::unique_ptr<ServerProcess>> servers;
  servers.push_back(Start("a"));
  servers.push_back(Start("b"));

  // A job submitted on a, watched on b: every event once, in order.
  JobClient a(servers[0]->Channel());
  auto demo = a.Submit(SubmitRequestOf("demo.steps", R"({"steps": ["x", "y"], "step_ms": 100})"));
  ASSERT_TRUE(demo.ok()) << demo.status();
  testing::Stream watched = WatchOnce(servers[1]->Channel(), demo->id(), 0);
  ASSERT_TRUE(watched.status.ok()) << watched.status.error_message();
  const std::vector<JobEvent>& seen = watched.events;
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].sequence(), int64_t(i + 1));
  EXPECT_EQ(seen.back().type(), JobEvent::SUCCEEDED);

  constexpr int kJobs = 2000;
  constexpr int kWorkers = 32;
  std::vector<std::string> ids;
  {
    std::mutex mu;
    std::vector<std::thread> submitters;
    for (int t = 0; t < 8; ++t) {
      submitters.emplace_back([&, t] {
        JobClient client(servers[t % 2]->Channel());
        for (int i = 0; i < kJobs / 8; ++i) {
          auto job = client.Submit(SubmitRequestOf("ext", absl::StrCat(R"({"n": )", t * 1000 + i, "}")));
          ASSERT_TRUE(job.ok()) << job.status();
          std::lock_guard lock(mu);
          ids.push_back(job->id());
        }
      });
    }
    for (auto& t : submitters) t.join();
  }
  ASSERT_EQ(ids.size(), size_t{kJobs});

  std::mutex mu;
  std::map<std::string, int> done_by_job;  // completions acknowledged, by job
  std::map<std::string, int> done_by_server;
  std::atomic<int> done{0};
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      const std::string server = w % 2 == 0 ? "a" : "b";
      auto stub = v1::WorkerService::NewStub(servers[w % 2]->Channel());
      while (done < kJobs && absl::Now() < deadline) {
        v1::LeaseJobRequest lease;
        lease.add_types("ext");
        lease.set_worker_id(absl::StrCat("w", w));
        lease.mutable_wait()->set_seconds(1);
        v1::LeaseJobResponse leased;
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub->LeaseJob(&ctx, lease, &leased).ok());
        for (const v1::LeasedJob& job : leased.jobs()) {
          v1::CompleteJobRequest complete;
          complete.set_lease_id(job.lease_id());
          (*complete.mutable_result()->mutable_struct_value()->mutable_fields())["by"]
              .set_string_value(server);
          Job finished;
          grpc::ClientContext complete_ctx;
          grpc::Status s = stub->CompleteJob(&complete_ctx, complete, &finished);
          ASSERT_TRUE(s.ok()) << s.error_message();
          std::lock_guard lock(mu);
          ++done_by_job[job.job().id()];
          ++done_by_server[server];
          ++done;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  ASSERT_EQ(done.load(), kJobs);
  ASSERT_EQ(done_by_job.size(), size_t{kJobs});
  for (const auto& [id, count] : done_by_job) EXPECT_EQ(count, 1) << id;
  EXPECT_GT(done_by_server["a"], 0);
  EXPECT_GT(done_by_server["b"], 0);
  JobClient b(servers[1]->Channel());
  for (size_t i = 0; i < ids.size(); i += 97) {
    auto job = b.GetStatus(ids[i]);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->state(), Job::SUCCEEDED);
    EXPECT_EQ(job->attempt(), 1) << "done once, at the first attempt";
  }
}

TEST_F(ScaleOutTest, KeyConcurrencyHoldsAcrossServers) {
  std::unique_ptr<ServerProcess> servers[2] = {Start("a"), Start("b")};
  JobClient a(servers[0]->Channel());
  std::map<std::string, std::vector<std::string>> by_key;
  for (int i = 0; i < 12; ++i) {
    for (const char* key : {"k1", "k2"}) {
      v1::SubmitRequest request = SubmitRequestOf("keyed", "{}");
      request.set_concurrency_key(key);
      auto job = a.Submit(request);
      ASSERT_TRUE(job.ok()) << job.status();
      by_key[key].push_back(job->id());
    }
  }
  // Eight workers, four on each server, each holding a job 50 ms.
  std::atomic<int> done{0};
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&, w] {
      auto stub = v1::WorkerService::NewStub(servers[w % 2]->Channel());
      while (done < 24 && absl::Now() < deadline) {
        v1::LeaseJobRequest lease;
        lease.add_types("keyed");
        lease.set_worker_id(absl::StrCat("w", w));
        lease.mutable_wait()->set_nanos(300'000'000);
        v1::LeaseJobResponse leased;
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub->LeaseJob(&ctx, lease, &leased).ok());
        for (const v1::LeasedJob& job : leased.jobs()) {
          absl::SleepFor(absl::Milliseconds(50));
          v1::CompleteJobRequest complete;
          complete.set_lease_id(job.lease_id());
          Job finished;
          grpc::ClientContext complete_ctx;
          ASSERT_TRUE(stub->CompleteJob(&complete_ctx, complete, &finished).ok());
          ++done;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  ASSERT_EQ(done.load(), 24);
  // From the jobs' events: starts +1, ends -1 (ends first at one instant).
  for (const auto& [key, ids] : by_key) {
    std::vector<std::pair<absl::Time, int>> changes;
    for (const std::string& id : ids) {
      testing::Stream watched = WatchOnce(servers[1]->Channel(), id, 0);
      ASSERT_TRUE(watched.status.ok()) << watched.status.error_message();
      for (const JobEvent& e : watched.events) {
        if (e.type() == JobEvent::STARTED) changes.push_back({v1::ToTime(e.time()), +1});
        if (e.type() == JobEvent::SUCCEEDED) changes.push_back({v1::ToTime(e.time()), -1});
      }
    }
    ASSERT_EQ(changes.size(), 24u) << key;
    std::sort(changes.begin(), changes.end());
    int running = 0, most = 0;
    for (const auto& [at, delta] : changes) most = std::max(most, running += delta);
    EXPECT_EQ(most, 2) << "key " << key << ": at most two at once, over both servers";
  }
}

TEST_F(ScaleOutTest, AKilledServersRunIsRetriedByTheOtherAndAResumedWatchHasNoGap) {
  std::unique_ptr<ServerProcess> servers[2] = {Start("a"), Start("b")};
  JobClient a(servers[0]->Channel());
  auto job = a.Submit(
      SubmitRequestOf("demo.steps", R"({"steps": ["s1", "s2", "s3", "s4"], "step_ms": 400})"));
  ASSERT_TRUE(job.ok());
  // Whichever server runs it dies; the watch reads through the same one until then.
  Job running;
  for (int i = 0; i < 200 && running.state() != Job::RUNNING; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    running = *a.GetStatus(job->id());
  }
  ASSERT_EQ(running.state(), Job::RUNNING);
  const int victim = running.worker_id() == "a" ? 0 : 1;
  ASSERT_EQ(running.worker_id(), victim == 0 ? "a" : "b");
  // Killed once the watcher has seen three events (a count, not a time: under load a
  // fixed 500 ms was once too short for the stream to deliver them).
  testing::Stream cut;
  absl::Notification seen_three;
  std::thread watcher([&] {
    int n = 0;
    cut = WatchOnce(servers[victim]->Channel(), job->id(), 0, absl::Seconds(30),
                    [&](const JobEvent&) {
                      if (++n == 3) seen_three.Notify();
                    });
    if (!seen_three.HasBeenNotified()) seen_three.Notify();
  });
  seen_three.WaitForNotificationWithTimeout(absl::Seconds(30));
  servers[victim]->Kill();
  watcher.join();
  EXPECT_FALSE(cut.status.ok()) << "the stream ended with its server";
  std::vector<JobEvent> events = cut.events;
  ASSERT_GE(events.size(), 3u);
  // Resumed on the survivor from the last sequence seen.
  testing::Stream rest = WatchOnce(servers[1 - victim]->Channel(), job->id(),
                                   events.back().sequence(), absl::Seconds(60));
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  events.insert(events.end(), rest.events.begin(), rest.events.end());
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].sequence(), int64_t(i + 1)) << "gap or repeat at " << i;
  }
  int retrying = 0;
  for (const JobEvent& e : events) {
    if (e.type() != JobEvent::RETRYING) continue;
    ++retrying;
    EXPECT_NE(e.status().error().message().find("lease expired"), std::string::npos)
        << e.status().error().message();
  }
  EXPECT_EQ(retrying, 1);
  EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED);
  EXPECT_EQ(events.back().status().attempt(), 2);
  EXPECT_EQ(events.back().status().worker_id(), victim == 0 ? "b" : "a");
}

// A retry asked of one server: a watcher on the other, resuming after the job's first
// end, gets the RETRIED event and follows the new run to its end; a bulk retry asked of
// the other does the same for many.
TEST_F(ScaleOutTest, ARetryAskedOfOneServerIsFollowedOnTheOther) {
  std::unique_ptr<ServerProcess> servers[2] = {Start("a"), Start("b")};
  JobClient a(servers[0]->Channel()), b(servers[1]->Channel());
  v1::SubmitRequest failing = SubmitRequestOf(
      "demo.steps", R"({"steps": ["s1"], "step_ms": 0, "ticks": 0, "fail_at": "s1"})");
  failing.set_max_attempts(1);
  (*failing.mutable_labels())["group"] = "cross";
  auto job = a.Submit(failing);
  ASSERT_TRUE(job.ok()) << job.status();
  auto ended = b.Watch(job->id(), 0, [](const JobEvent&) {});
  ASSERT_TRUE(ended.ok()) << ended.status();
  ASSERT_EQ(ended->state(), Job::FAILED);
  grpc::ClientContext ctx;
  v1::RetryJobRequest retry;
  retry.set_job_id(job->id());
  retry.set_reason("cross-server");
  Job retried;
  ASSERT_TRUE(v1::JobService::NewStub(servers[0]->Channel())->RetryJob(&ctx, retry, &retried).ok());
  // A watcher on b resuming after the job's first end (a stream there ended with it).
  testing::Stream after =
      WatchOnce(servers[1]->Channel(), job->id(), ended->last_sequence(), absl::Seconds(60));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  ASSERT_FALSE(after.events.empty());
  EXPECT_EQ(after.events.front().type(), JobEvent::RETRIED);
  EXPECT_EQ(after.events.front().action().reason(), "cross-server");
  EXPECT_EQ(after.events.back().type(), JobEvent::FAILED);
  EXPECT_EQ(after.events.back().status().series(), 2);

  // Many, by a bulk retry asked of b while a watches one of them.
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto more = a.Submit(failing);
    ASSERT_TRUE(more.ok());
    ids.push_back(more->id());
  }
  for (const std::string& id : ids) ASSERT_TRUE(a.Watch(id, 0, [](const JobEvent&) {}).ok());
  grpc::ClientContext bulk_ctx;
  v1::BulkRequest bulk;
  (*bulk.mutable_filter()->mutable_labels())["group"] = "cross";
  bulk.mutable_filter()->add_states(Job::FAILED);
  v1::BulkResponse counts;
  ASSERT_TRUE(v1::JobService::NewStub(servers[1]->Channel())->BulkRetry(&bulk_ctx, bulk, &counts).ok());
  EXPECT_EQ(counts.changed(), 21);
  for (const std::string& id : ids) {
    auto again = a.Watch(id, 0, [](const JobEvent&) {});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->series(), 2) << id;
  }
}

TEST_F(ScaleOutTest, PostgresRestartedUnderLoadIsUnavailableMeanwhileAndLosesNothing) {
  testing::PostgresProcess& postgres = Private();  // restarted below: not the shared one
  url_ = postgres.NewDatabase().value_or("");
  std::unique_ptr<ServerProcess> servers[2] = {Start("a"), Start("b")};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> acknowledged;
  std::map<grpc::StatusCode, int> refused;
  std::vector<std::thread> submitters;
  for (int t = 0; t < 6; ++t) {
    submitters.emplace_back([&, t] {
      auto stub = v1::JobService::NewStub(servers[t % 2]->Channel());
      while (!stop) {
        v1::SubmitRequest request = SubmitRequestOf("demo.steps", R"({"steps": ["x"], "step_ms": 0})");
        Job job;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        grpc::Status s = stub->Submit(&ctx, request, &job);
        std::lock_guard lock(mu);
        if (s.ok()) {
          acknowledged.push_back(job.id());
        } else {
          ++refused[s.error_code()];
          absl::SleepFor(absl::Milliseconds(20));
        }
      }
    });
  }
  // Under load before the restart: some Submits are in (a fixed 500 ms once saw none, on
  // a machine busy starting the whole suite).
  size_t before = 0;
  for (const absl::Time ready_by = absl::Now() + absl::Seconds(30);
       before < 20 && absl::Now() < ready_by;) {
    absl::SleepFor(absl::Milliseconds(50));
    std::lock_guard lock(mu);
    before = acknowledged.size();
  }
  ASSERT_TRUE(postgres.Restart(SIGINT).ok());  // a fast shutdown, then up again
  // Submits succeed again once the servers reconnect.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  size_t after_restart = 0;
  for (;;) {
    absl::SleepFor(absl::Milliseconds(100));
    std::lock_guard lock(mu);
    if (acknowledged.size() > before + 50 || absl::Now() > deadline) {
      after_restart = acknowledged.size();
      break;
    }
  }
  stop = true;
  for (auto& t : submitters) t.join();
  EXPECT_GT(after_restart, before + 50) << "submits resumed after PostgreSQL came back";
  EXPECT_GT(before, 0u);
  EXPECT_GT(refused[grpc::StatusCode::UNAVAILABLE], 0) << "some Submit met PostgreSQL down";
  for (const auto& [code, count] : refused) {
    EXPECT_EQ(code, grpc::StatusCode::UNAVAILABLE) << count << " refused with code " << code;
  }
  // Every acknowledged job is there, on either server, and runs to its end.
  JobClient clients[2] = {JobClient(servers[0]->Channel()), JobClient(servers[1]->Channel())};
  for (size_t i = 0; i < acknowledged.size(); ++i) {
    auto job = clients[i % 2].GetStatus(acknowledged[i]);
    ASSERT_TRUE(job.ok()) << acknowledged[i] << ": " << job.status();
  }
  // The last one runs to its end (waited for with a limit: a job stuck after the restart
  // is a failure that says where it stands, not a hang).
  grpc::ClientContext ctx;
  v1::WaitJobRequest wait;
  wait.set_job_id(acknowledged.back());
  wait.mutable_timeout()->set_seconds(60);
  Job last;
  grpc::Status waited = v1::JobService::NewStub(servers[0]->Channel())->WaitJob(&ctx, wait, &last);
  ASSERT_TRUE(waited.ok()) << waited.error_message();
  EXPECT_EQ(last.state(), Job::SUCCEEDED) << last.ShortDebugString();
}

TEST_F(ScaleOutTest, OneServerFiresSchedulesAndWhenKilledAnotherFiresEveryFireTimeOnce) {
  std::unique_ptr<ServerProcess> a = Start("a");
  auto schedules_a = v1::ScheduleService::NewStub(a->Channel());
  {
    v1::CreateScheduleRequest request;
    v1::Schedule& s = *request.mutable_schedule();
    s.set_id("tick");
    s.mutable_interval()->set_seconds(1);
    s.mutable_job()->set_type("demo.steps");
    google::protobuf::util::JsonStringToMessage(R"({"steps": ["x"], "step_ms": 0, "ticks": 0})",
                                                s.mutable_job()->mutable_params());
    s.set_overlap(v1::Schedule::ALLOW);
    s.set_catch_up(v1::Schedule::RUN_ALL);
    grpc::ClientContext ctx;
    v1::Schedule created;
    grpc::Status st = schedules_a->CreateSchedule(&ctx, request, &created);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  // a fires (the only server, so the leader); then b starts beside it.
  absl::SleepFor(absl::Milliseconds(1500));
  std::unique_ptr<ServerProcess> b = Start("b");
  // Killed at some point of its tick: perhaps mid-fire, its job committed and its
  // schedule not yet written.
  absl::SleepFor(absl::Milliseconds(1500 + absl::ToUnixMillis(absl::Now()) % 100));
  a->Kill();
  const absl::Time killed = absl::Now();
  absl::SleepFor(absl::Seconds(3));
  auto schedules_b = v1::ScheduleService::NewStub(b->Channel());
  {
    grpc::ClientContext ctx;
    v1::PauseScheduleRequest request;
    request.set_id("tick");
    v1::Schedule paused;
    ASSERT_TRUE(schedules_b->PauseSchedule(&ctx, request, &paused).ok());
  }
  // Every fire time from the first to the last has exactly one job.
  auto jobs = v1::JobService::NewStub(b->Channel());
  grpc::ClientContext ctx;
  v1::ListJobsRequest request;
  (*request.mutable_labels())["jobstream/schedule"] = "tick";
  request.set_page_size(1000);
  v1::ListJobsResponse listed;
  ASSERT_TRUE(jobs->ListJobs(&ctx, request, &listed).ok());
  std::map<int64_t, int> per_time;
  for (const Job& job : listed.jobs()) {
    absl::Time t;
    std::string err;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, job.labels().at("jobstream/fire-time"), &t,
                                &err));
    ++per_time[absl::ToUnixSeconds(t)];
  }
  ASSERT_GE(per_time.size(), 5u);
  EXPECT_GE(per_time.rbegin()->first, absl::ToUnixSeconds(killed) + 1) << "b fired after a died";
  int64_t expected = per_time.begin()->first;
  for (const auto& [time, count] : per_time) {
    EXPECT_EQ(time, expected++) << "a fire time without a job";
    EXPECT_EQ(count, 1) << "fire time " << time << " has " << count << " jobs";
  }
}

TEST_F(ScaleOutTest, ABatchsLeaderKilledMidCountAnotherCountsEveryChildOnce) {
  std::unique_ptr<ServerProcess> a = Start("a");  // first, so it leads and counts
  absl::SleepFor(absl::Milliseconds(1500));
  std::unique_ptr<ServerProcess> b = Start("b");
  auto jobs = v1::JobService::NewStub(b->Channel());
  v1::SubmitBatchRequest request;
  constexpr int kChildren = 600;
  for (int i = 0; i < kChildren; ++i) {
    *request.add_children() =
        SubmitRequestOf("demo.steps", R"({"steps": ["x"], "step_ms": 5, "ticks": 0})");
  }
  v1::SubmitBatchResponse batch;
  {
    grpc::ClientContext ctx;
    grpc::Status s = jobs->SubmitBatch(&ctx, request, &batch);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  absl::SleepFor(absl::Milliseconds(400));  // some children ended and counted, most not
  a->Kill();
  // Followed as a client does, resuming from the last event if the server drops a watcher
  // that falls behind (600 CHILD events to a test sharing the machine with seven others).
  JobClient client(b->Channel());
  const std::vector<JobEvent> parent = testing::FollowJob(client, batch.parent().id());
  std::map<std::string, int> counted;
  for (size_t i = 0; i < parent.size(); ++i) {
    const JobEvent& e = parent[i];
    ASSERT_EQ(e.sequence(), int64_t(i + 1)) << "gap";
    if (e.type() == JobEvent::CHILD) ++counted[e.child().job_id()];
  }
  EXPECT_EQ(counted.size(), static_cast<size_t>(kChildren));
  for (const auto& [id, n] : counted) EXPECT_EQ(n, 1) << id << " counted " << n << " times";
  ASSERT_EQ(parent.back().type(), JobEvent::SUCCEEDED);
  EXPECT_EQ(parent.back().status().batch().succeeded(), kChildren);
}

TEST_F(ScaleOutTest, DelayedJobsOfADeadServerRunOnceOnAnother) {
  std::unique_ptr<ServerProcess> a = Start("a");
  std::unique_ptr<ServerProcess> b = Start("b");
  JobClient on_a(a->Channel());
  const int64_t run_at = absl::ToUnixSeconds(absl::Now()) + 3;
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    v1::SubmitRequest request =
        SubmitRequestOf("demo.steps", R"({"steps": ["x"], "step_ms": 0, "ticks": 0})");
    request.mutable_run_at()->set_seconds(run_at);
    auto job = on_a.Submit(request);
    ASSERT_TRUE(job.ok()) << job.status();
    ids.push_back(job->id());
  }
  a->Kill();  // before any is due
  JobClient on_b(b->Channel());
  for (const std::string& id : ids) {
    std::vector<JobEvent> events = testing::FollowJob(on_b, id);
    EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED) << id;
    int started = 0;
    for (const JobEvent& e : events) started += e.type() == JobEvent::STARTED;
    EXPECT_EQ(started, 1) << id;
    EXPECT_EQ(events.back().status().worker_id(), "b") << "run by the server still up";
    EXPECT_GE(v1::ToTime(events.back().status().start_time()), absl::FromUnixSeconds(run_at));
  }
}

}  // namespace
}  // namespace jobstream
