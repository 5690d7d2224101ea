// Black-box tests of the real jobstream-server binary over real gRPC channels.
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/job_client.h"
#include "jobstream/v1/job_states.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/support/job_helpers.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::JobClient;
using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

v1::SubmitRequest Demo(const std::string& params_json) {
  return testing::SubmitRequestOf("demo.steps", params_json);
}

using testing::Stream;
using testing::WatchOnce;

// Runs on each store (store_test.h).
class ServerTest : public testing::StoreTest {
 protected:
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> flags = {}) {
    for (std::string& f : StoreFlags()) flags.push_back(std::move(f));
    return std::make_unique<ServerProcess>(dir_.sub("data"), std::move(flags));
  }
  testing::TempDir dir_;
};
JOBSTREAM_BOTH_STORES(ServerTest);

// What only the embedded store has: a data dir.
class RocksServerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> Start() {
    return std::make_unique<ServerProcess>(dir_.sub("data"));
  }
  testing::TempDir dir_;
};

TEST_P(ServerTest, ReplaysFromEverySequenceAndEndsAfterTheTerminalEvent) {
  auto server = Start();
  JobClient client(server->Channel());
  auto job = client.Submit(Demo(R"({"steps": ["a", "b"], "step_ms": 60, "ticks": 3})"));
  ASSERT_TRUE(job.ok()) << job.status();
  Stream full = WatchOnce(server->Channel(), job->id(), 0);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  ASSERT_EQ(full.events.back().type(), JobEvent::SUCCEEDED);
  const int64_t last = full.events.back().sequence();
  // CREATED STARTED (STEP + 3 PROGRESS) x2 SUCCEEDED, but a PROGRESS that found the one before
  // it still unwritten replaced it (DESIGN: a slow store coalesces ticks, never a STEP): each
  // step's last PROGRESS is its final tick.
  std::vector<std::string> shape;
  for (size_t i = 0; i < full.events.size(); ++i) {
    const JobEvent& e = full.events[i];
    EXPECT_EQ(e.sequence(), static_cast<int64_t>(i + 1));
    const bool last_tick =
        e.type() == JobEvent::PROGRESS && full.events[i + 1].type() != JobEvent::PROGRESS;
    if (e.type() != JobEvent::PROGRESS) {
      shape.push_back(JobEvent::Type_Name(e.type()));
    } else if (last_tick) {
      shape.push_back(e.status().progress().message());
    }
  }
  EXPECT_EQ(shape, (std::vector<std::string>{"CREATED", "STARTED", "STEP", "a 3/3", "STEP", "b 3/3",
                                             "SUCCEEDED"}));
  EXPECT_GE(last, 7);
  EXPECT_LE(last, 11);
  for (int64_t after = 0; after <= last; ++after) {
    Stream part = WatchOnce(server->Channel(), job->id(), after);
    ASSERT_TRUE(part.status.ok()) << after;
    ASSERT_EQ(part.events.size(), static_cast<size_t>(last - after)) << after;
    for (size_t i = 0; i < part.events.size(); ++i) {
      EXPECT_EQ(part.events[i].SerializeAsString(), full.events[after + i].SerializeAsString());
    }
  }
  Stream past = WatchOnce(server->Channel(), job->id(), last + 1);
  EXPECT_EQ(past.status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(past.events.empty());
}

TEST_P(ServerTest, OutOfRangeOnALiveJobInsteadOfHanging) {
  auto server = Start();
  JobClient client(server->Channel());
  auto job = client.Submit(Demo(R"({"steps": ["slow"], "step_ms": 5000})"));
  ASSERT_TRUE(job.ok());
  Stream ahead = WatchOnce(server->Channel(), job->id(), 1000, absl::Seconds(5));
  EXPECT_EQ(ahead.status.error_code(), grpc::StatusCode::OUT_OF_RANGE)
      << ahead.status.error_message();
  ASSERT_TRUE(client.Cancel(job->id()).ok());
}

TEST_P(ServerTest, SubmitWithARequestIdIsIdempotent) {
  auto server = Start();
  JobClient client(server->Channel());
  v1::SubmitRequest request = Demo(R"({"step_ms": 0})");
  request.set_request_id("invoice-2026-0001");
  auto first = client.Submit(request);
  auto second = client.Submit(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->id(), second->id());
  auto listed = client.List({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 1);
}

TEST_P(ServerTest, TwoHundredWatchersOfOneJobSeeTheStoredEventsInOrder) {
  auto server = Start();
  JobClient client(server->Channel());
  v1::SubmitRequest request = Demo(R"({"steps": ["a", "b", "c"], "step_ms": 300, "ticks": 10})");
  // Starts in a second, so every watcher is attached before the first step.
  request.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Seconds(2)));
  auto job = client.Submit(request);
  ASSERT_TRUE(job.ok());
  constexpr int kWatchers = 200;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < 4; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("jobstream.test.channel", c);  // distinct args: distinct connections
    channels.push_back(grpc::CreateCustomChannel(server->address(),
                                                 grpc::InsecureChannelCredentials(), args));
  }
  std::vector<Stream> streams(kWatchers);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWatchers; ++w) {
    threads.emplace_back([&, w] { streams[w] = WatchOnce(channels[w % 4], job->id(), 0); });
  }
  for (auto& t : threads) t.join();
  // The stored log, replayed whole.
  const Stream stored = WatchOnce(channels[0], job->id(), 0);
  ASSERT_TRUE(stored.status.ok()) << stored.status.error_message();
  ASSERT_EQ(stored.events.back().type(), JobEvent::SUCCEEDED);
  // Every state change, and the PROGRESS ticks between (30 at most: one that found the one
  // before it still unwritten replaced it).
  std::vector<JobEvent::Type> changes;
  size_t progress = 0;
  for (size_t i = 0; i < stored.events.size(); ++i) {
    ASSERT_EQ(stored.events[i].sequence(), static_cast<int64_t>(i + 1)) << "dense";
    if (stored.events[i].type() == JobEvent::PROGRESS) {
      ++progress;
    } else {
      changes.push_back(stored.events[i].type());
    }
  }
  EXPECT_EQ(changes, (std::vector<JobEvent::Type>{JobEvent::CREATED, JobEvent::STARTED,
                                                  JobEvent::STEP, JobEvent::STEP, JobEvent::STEP,
                                                  JobEvent::SUCCEEDED}));
  EXPECT_GE(progress, 1u);
  EXPECT_LE(progress, 30u);
  // Each watcher saw the stored events themselves, in order, and every state change. A
  // watcher still attaching when the job started (a loaded machine takes more than the two
  // seconds to open 200) had its live events queue up behind its replay, and a queue that
  // long conflates PROGRESS (README, "Slow watchers"): what it missed is only PROGRESS
  // that a newer one replaced.
  int whole = 0;
  for (int w = 0; w < kWatchers; ++w) {
    ASSERT_TRUE(streams[w].status.ok()) << w << ": " << streams[w].status.error_message();
    std::vector<int64_t> seen;
    for (const JobEvent& e : streams[w].events) {
      ASSERT_GE(e.sequence(), 1) << w;
      ASSERT_LE(e.sequence(), static_cast<int64_t>(stored.events.size())) << w;
      ASSERT_TRUE(seen.empty() || e.sequence() > seen.back()) << "watcher " << w << " in order";
      EXPECT_EQ(e.SerializeAsString(), stored.events[e.sequence() - 1].SerializeAsString())
          << "watcher " << w << ", sequence " << e.sequence();
      seen.push_back(e.sequence());
    }
    for (const JobEvent& e : stored.events) {
      if (std::binary_search(seen.begin(), seen.end(), e.sequence())) continue;
      EXPECT_EQ(e.type(), JobEvent::PROGRESS)
          << "watcher " << w << " missed sequence " << e.sequence() << ", a state change";
    }
    if (seen.size() == stored.events.size()) ++whole;
  }
  std::cout << whole << " of " << kWatchers << " watchers saw every stored event\n";
}

TEST_P(ServerTest, Kill9LosesNoAcknowledgedJobAndAResumedWatchHasNoGap) {
  auto server = Start({"--retry_backoff=0s"});
  JobClient client(server->Channel());
  // A job running across the crash, with a watcher that resumes on its own.
  auto long_job =
      client.Submit(Demo(R"({"steps": ["a", "b", "c", "d"], "step_ms": 1000, "ticks": 4})"));
  ASSERT_TRUE(long_job.ok());
  std::vector<JobEvent> watched;
  absl::Notification running;  // the watcher saw its first STEP: the kill interrupts a run
  absl::StatusOr<Job> watch_result;
  std::thread watcher([&] {
    JobClient watch_client(JobClient::Connect(server->address()));
    client::WatchOptions options;
    options.reconnect_timeout = absl::Seconds(30);
    watch_result = watch_client.Watch(
        long_job->id(), 0,
        [&](const JobEvent& e) {
          watched.push_back(e);
          if (e.type() == JobEvent::STEP && !running.HasBeenNotified()) running.Notify();
        },
        options);
  });
  // Submits in flight from several threads when the server is killed.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> acknowledged;
  std::vector<std::thread> submitters;
  for (int t = 0; t < 8; ++t) {
    submitters.emplace_back([&] {
      JobClient c(server->Channel());
      while (!stop) {
        auto job = c.Submit(Demo(R"({"step_ms": 0, "ticks": 0})"));
        if (!job.ok()) break;
        std::lock_guard<std::mutex> lock(mu);
        acknowledged.push_back(job->id());
      }
    });
  }
  // Killed once many submits are acknowledged (a count, not a time: under ASan beside
  // other tests 700 ms was sometimes only 27), with more in flight.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acknowledged.size();
  };
  while (count() <= 60 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(30))) << "never ran";
  server->Kill();
  stop = true;
  for (auto& t : submitters) t.join();
  ASSERT_GT(acknowledged.size(), 60u);

  const std::string address = server->address();
  server = Start({"--listen=" + address, "--retry_backoff=0s"});
  JobClient after(server->Channel());
  for (const std::string& id : acknowledged) {
    auto job = after.GetStatus(id);
    ASSERT_TRUE(job.ok()) << id << ": " << job.status();
  }
  watcher.join();
  ASSERT_TRUE(watch_result.ok()) << watch_result.status();
  EXPECT_EQ(watch_result->state(), Job::SUCCEEDED);
  for (size_t i = 0; i < watched.size(); ++i) {
    ASSERT_EQ(watched[i].sequence(), static_cast<int64_t>(i + 1)) << "gap or repeat at " << i;
  }
  // Retried by the restarted server's recovery (on PostgreSQL: the same --server_id takes
  // back its runs at once), not by a lease running out.
  int retried = 0;
  for (const JobEvent& e : watched) {
    if (e.type() != JobEvent::RETRYING) continue;
    ++retried;
    EXPECT_NE(e.status().error().message().find("the server stopped while attempt 1"),
              std::string::npos)
        << e.status().error().message();
  }
  EXPECT_EQ(retried, 1) << "the crash interrupted the job, so recovery retried it";
}

// A delayed job waits as a QUEUED record with its run_at, leased only once due: a kill -9
// and a restart while it waits neither lose it nor run it twice (unlike an ETA task that
// a broker redelivers after its visibility timeout), and one days ahead stays put.
TEST_P(ServerTest, DelayedJobsRunOnceAcrossAKill9AndDaysAheadStayQueued) {
  auto server = Start();
  JobClient client(server->Channel());
  std::vector<std::string> soon;
  const int64_t run_at = absl::ToUnixSeconds(absl::Now()) + 3;
  for (int i = 0; i < 20; ++i) {
    v1::SubmitRequest request = Demo(R"({"steps": ["a"], "step_ms": 0, "ticks": 0})");
    request.mutable_run_at()->set_seconds(run_at);
    auto job = client.Submit(request);
    ASSERT_TRUE(job.ok()) << job.status();
    soon.push_back(job->id());
  }
  v1::SubmitRequest far = Demo(R"({"steps": ["a"], "step_ms": 0})");
  const int64_t two_days = absl::ToUnixSeconds(absl::Now() + absl::Hours(48));
  far.mutable_run_at()->set_seconds(two_days);
  auto later = client.Submit(far);
  ASSERT_TRUE(later.ok());
  absl::SleepFor(absl::Milliseconds(1000));
  const std::string address = server->address();
  server->Kill();
  server = Start({"--listen=" + address});
  JobClient after(server->Channel());
  for (const std::string& id : soon) {
    std::vector<JobEvent> events = testing::FollowJob(after, id);
    EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED) << id;
    int started = 0;
    for (const JobEvent& e : events) started += e.type() == JobEvent::STARTED;
    EXPECT_EQ(started, 1) << id << " ran " << started << " times";
    EXPECT_EQ(events.back().status().attempt(), 1) << id;
    EXPECT_GE(v1::ToTime(events.back().status().start_time()), absl::FromUnixSeconds(run_at))
        << id << " started before its run_at";
  }
  auto waiting = after.GetStatus(later->id());
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->state(), Job::QUEUED);
  EXPECT_EQ(waiting->run_at().seconds(), two_days);
  EXPECT_EQ(waiting->attempt(), 0);
}

TEST_P(ServerTest, SigtermEndsStreamsUnavailableExitsZeroAndRequeuesRunningJobs) {
  auto server = Start();
  JobClient client(server->Channel());
  auto job = client.Submit(Demo(R"({"steps": ["a", "b"], "step_ms": 800, "ticks": 2})"));
  ASSERT_TRUE(job.ok());
  // The signal comes once the watcher has seen the job's first STEP (a claim may take a while
  // on a busy machine; a fixed sleep once sent it before the job had started).
  Stream stream;
  absl::Notification stepped;
  std::thread watcher([&] {
    auto stub = v1::JobService::NewStub(server->Channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::WatchJobRequest request;
    request.set_job_id(job->id());
    auto reader = stub->WatchJob(&ctx, request);
    JobEvent e;
    while (reader->Read(&e)) {
      stream.events.push_back(e);
      if (e.type() == JobEvent::STEP && !stepped.HasBeenNotified()) stepped.Notify();
    }
    stream.status = reader->Finish();
    if (!stepped.HasBeenNotified()) stepped.Notify();  // the assertions below say what failed
  });
  stepped.WaitForNotification();
  const int status = server->Stop(SIGTERM);
  watcher.join();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stream.status.error_message();
  ASSERT_GE(stream.events.size(), 3u);  // CREATED STARTED STEP

  server = Start();
  JobClient again(server->Channel());
  auto requeued = again.GetStatus(job->id());
  ASSERT_TRUE(requeued.ok());
  Stream rest = WatchOnce(server->Channel(), job->id(), stream.events.back().sequence());
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_FALSE(rest.events.empty());
  int64_t expected = stream.events.back().sequence();
  int retrying = 0;
  for (const JobEvent& e : rest.events) {
    EXPECT_EQ(e.sequence(), ++expected) << "the stream continues with no gap";
    retrying += e.type() == JobEvent::RETRYING;
  }
  EXPECT_EQ(retrying, 1) << "requeued once, by the shutdown";
  EXPECT_EQ(rest.events.back().type(), JobEvent::SUCCEEDED);
  EXPECT_EQ(rest.events.back().status().attempt(), 1) << "a shutdown does not spend an attempt";
}

TEST_P(ServerTest, BadInputGetsAPreciseStatusAndWritesNothing) {
  auto server = Start();
  auto stub = v1::JobService::NewStub(server->Channel());
  auto submit = [&](const v1::SubmitRequest& r) {
    grpc::ClientContext ctx;
    Job job;
    return stub->Submit(&ctx, r, &job);
  };
  auto get = [&](const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetStatusRequest r;
    r.set_job_id(id);
    Job job;
    return stub->GetStatus(&ctx, r, &job);
  };
  v1::SubmitRequest unknown;
  unknown.set_type("demo.stepz");
  grpc::Status s = submit(unknown);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "unknown job type \"demo.stepz\"; known types: demo.steps");
  s = submit(Demo(R"({"steps": "fetch"})"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "params.steps must be a list of step names");
  v1::SubmitRequest huge = Demo("{}");
  (*huge.mutable_params()->mutable_fields())["blob"].set_string_value(std::string(2 << 20, 'x'));
  s = submit(huge);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("the limit is 1048576"), std::string::npos) << s.error_message();
  v1::SubmitRequest bad_request_id = Demo("{}");
  bad_request_id.set_request_id(std::string("a\nb"));
  EXPECT_EQ(submit(bad_request_id).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(get("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(get(std::string(1 << 16, '0')).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = get("01m81rd5kq5g91qm659eqts4bn");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no job with id 01m81rd5kq5g91qm659eqts4bn");
  EXPECT_EQ(WatchOnce(server->Channel(), "01m81rd5kq5g91qm659eqts4bn", 0).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(WatchOnce(server->Channel(), "short", 0).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  Stream negative = WatchOnce(server->Channel(), "01m81rd5kq5g91qm659eqts4bn", -1);
  EXPECT_EQ(negative.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(negative.status.error_message(), "after_sequence -1 is negative; 0 replays from the start");
  {
    grpc::ClientContext ctx;
    v1::ListJobsRequest r;
    r.set_page_token("not-a-token");
    v1::ListJobsResponse response;
    EXPECT_EQ(stub->ListJobs(&ctx, r, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::PurgeJobsRequest r;
    v1::PurgeJobsResponse response;
    EXPECT_EQ(stub->PurgeJobs(&ctx, r, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  JobClient client(server->Channel());
  auto listed = client.List({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 0) << "no bad call wrote anything";
  EXPECT_TRUE(client.GetStatus("01m81rd5kq5g91qm659eqts4bn").status().code() ==
              absl::StatusCode::kNotFound);
}

TEST_P(ServerTest, WatchJobsSnapshotsLiveJobsThenStreamsTheirEvents) {
  auto server = Start();
  JobClient client(server->Channel());
  v1::SubmitRequest waiting = Demo("{}");
  waiting.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
  (*waiting.mutable_labels())["team"] = "red";
  auto queued = client.Submit(waiting);
  ASSERT_TRUE(queued.ok());
  auto stub = v1::JobService::NewStub(server->Channel());
  grpc::ClientContext ctx;
  v1::WatchJobsRequest request;
  (*request.mutable_labels())["team"] = "red";
  auto reader = stub->WatchJobs(&ctx, request);
  JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.type(), JobEvent::SNAPSHOT);
  EXPECT_EQ(e.job_id(), queued->id());
  EXPECT_EQ(e.sequence(), 1);
  EXPECT_EQ(e.status().state(), Job::QUEUED);
  v1::SubmitRequest other = Demo(R"({"step_ms": 0, "ticks": 0})");
  (*other.mutable_labels())["team"] = "blue";
  ASSERT_TRUE(client.Submit(other).ok());  // filtered out
  v1::SubmitRequest red = Demo(R"({"steps": ["only"], "step_ms": 0, "ticks": 0})");
  (*red.mutable_labels())["team"] = "red";
  auto run = client.Submit(red);
  ASSERT_TRUE(run.ok());
  std::vector<std::string> seen;
  while (reader->Read(&e)) {
    EXPECT_EQ(e.status().labels().at("team"), "red");
    seen.push_back(absl::StrCat(e.job_id() == run->id() ? "run:" : "queued:",
                                JobEvent::Type_Name(e.type())));
    if (e.job_id() == run->id() && e.type() == JobEvent::SUCCEEDED) break;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"run:CREATED", "run:STARTED", "run:STEP",
                                            "run:SUCCEEDED"}));
  ctx.TryCancel();
  reader->Finish();
  grpc::ClientContext bad_ctx;
  v1::WatchJobsRequest bad;
  bad.add_types("Not A Type");
  auto bad_reader = stub->WatchJobs(&bad_ctx, bad);
  EXPECT_FALSE(bad_reader->Read(&e));
  EXPECT_EQ(bad_reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Runs the server binary to its exit and returns (exit code, stderr).
std::pair<int, std::string> RunServer(const std::string& flags) {
  // `timeout`: a config accepted by mistake must fail the test, not hang it.
  return testing::RunCommand("timeout 20 " + testing::BinaryPath("server/jobstream-server") +
                             " " + flags + " 2>&1 >/dev/null");
}

TEST_P(ServerTest, ConfigDeclaresTypesAndBadConfigIsRefusedClearly) {
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir_.sub(name);
    FILE* f = fopen(path.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    return path;
  };
  const std::string good = write("good.json",
      R"({"types": [{"name": "demo.steps", "builtin": {}, "maxAttempts": 5}]})");
  auto server = Start({"--config=" + good});
  JobClient client(server->Channel());
  auto job = client.Submit(Demo("{}"));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->max_attempts(), 5) << "the type's default comes from the config";
  server->Stop();
  // What follows never reaches a store (a bad start is refused before one opens), so it
  // runs once, not once per store: 25 server starts fewer in each suite.
  if (postgres()) return;

  const std::string data = "--listen=127.0.0.1:0 --data_dir=" + dir_.sub("other") + " ";
  struct Case {
    std::string flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"--config=" + write("syntax.json", "{\"types\": [}"), "config file"},
      {"--config=" + write("unknown.json", R"({"typez": []})"), "typez"},
      {"--config=" + write("nohandler.json", R"({"types": [{"name": "x.y", "builtin": {}}]})"),
       "types[0] \"x.y\": builtin: there is no built-in handler of that name"},
      {"--config=" + write("noexec.json",
                           R"({"types": [{"name": "render", "exec": {"argv": ["/no/such/program"]}}]})"),
       "types[0] \"render\": exec.argv[0]: \"/no/such/program\" does not exist"},
      {"--config=" + write("notexec.json", absl::StrCat(R"({"types": [{"name": "render",
                                           "exec": {"argv": [")", write("plain.txt", "text"),
                                           R"("]}}]})")),
       "plain.txt\" is not executable"},
      {"--config=" + write("notinpath.json",
                           R"({"types": [{"name": "r", "exec": {"argv": ["no-such-tool-x"]}}]})"),
       "exec.argv[0]: \"no-such-tool-x\" is not in PATH"},
      {"--config=" + write("emptyargv.json", R"({"types": [{"name": "r", "exec": {}}]})"),
       "types[0] \"r\": exec.argv is required"},
      {"--config=" + write("baddir.json", R"({"types": [{"name": "r", "exec": {"argv": ["true"],
                                              "workingDir": "/no/dir"}}]})"),
       "exec.workingDir: \"/no/dir\" is not a directory"},
      {"--config=" + write("twice.json", R"({"types": [{"name": "a", "external": {}},
                                                       {"name": "a", "external": {}}]})"),
       "types[1] \"a\": declared twice (also types[0])"},
      {"--config=" + write("lease.json", R"({"types": [{"name": "a",
                                              "external": {"leaseDuration": "0.5s"}}]})"),
       "external.leaseDuration is 500ms; it must be 1s to 1h"},
      {"--config=" + write("timeouts.json", R"({"types": [{"name": "a", "timeout": "5s",
                                              "exec": {"argv": ["true"], "timeout": "5s"}}]})"),
       "set timeout or exec.timeout, not both"},
      {"--config=" + write("concurrency.json", R"({"types": [{"name": "a", "external": {},
                                              "concurrency": -1}]})"),
       "concurrency must be 0..10000"},
      {"--config=" + write("keyconcurrency.json", R"({"types": [{"name": "a", "external": {},
                                              "keyConcurrency": 10001}]})"),
       "types[0] \"a\": keyConcurrency must be 0..10000"},
      {"--config=" + write("keyrate.json", R"({"types": [{"name": "a", "external": {},
                                              "keyRate": 0.0001}]})"),
       "types[0] \"a\": keyRate must be 0.001..100000"},
      {"--config=" + write("keyratenegative.json", R"({"types": [{"name": "a", "external": {},
                                              "keyRate": -1}]})"),
       "keyRate must be 0.001..100000"},
      {"--config=" + write("backoff.json", R"({"types": [{"name": "a", "external": {},
                                              "retry": {"initialBackoff": "10s", "maxBackoff": "1s"}}]})"),
       "retry.maxBackoff is 1s; it must be 10s to 24h"},
      {"--config=" + write("demoext.json", R"({"types": [{"name": "demo.steps", "external": {}}]})"),
       "demo.steps is built in"},
      {"--config=" + write("badduration.json", R"({"types": [{"name": "a", "timeout": "soon",
                                                 "external": {}}]})"),
       "config file"},
      {"--config=" + write("badname.json", R"({"types": [{"name": "Bad Name", "builtin": {}}]})"),
       "is not a valid type name"},
      {"--config=" + write("reserved.json", R"({"types": [{"name": "jobstream.batch", "external": {}}]})"),
       "names starting \"jobstream.\" are the server's own"},
      {"--config=" + write("norunner.json", R"({"types": [{"name": "demo.steps"}]})"),
       "say how it runs"},
      {"--config=" + dir_.sub("missing.json"), "cannot read config file"},
      {"--listen=nonsense", "--listen must be HOST:PORT"},
      {"--runner_threads=0", "--runner_threads must be 1..1024"},
      {"stray-argument", "unexpected argument: stray-argument"},
  };
  for (const Case& c : cases) {
    auto [code, err] = RunServer(data + c.flags);
    EXPECT_EQ(code, 2) << c.flags << ": " << err;
    EXPECT_NE(err.find(c.message), std::string::npos) << c.flags << ": " << err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.sub("other"))) << "a refused start writes nothing";
}

// The CLI's exit codes, run as a user would.
int RunCli(const std::string& args, std::string* out = nullptr) {
  auto [code, text] =
      testing::RunCommand(testing::BinaryPath("client/jobstream") + " " + args + " 2>/dev/null");
  if (out) *out = text;
  return code;
}

TEST_P(ServerTest, CliExitCodesFollowTheJobsOutcome) {
  auto server = Start();
  const std::string s = "--server=" + server->address() + " ";
  std::string out;
  EXPECT_EQ(RunCli(s + "submit demo.steps --params='{\"step_ms\":0}' --watch --json", &out), 0);
  EXPECT_NE(out.find("\"type\":\"SUCCEEDED\""), std::string::npos) << out;
  EXPECT_EQ(RunCli(s + "submit demo.steps --params='{\"fail_at\":\"fetch\"}' --watch --json"), 1);
  EXPECT_EQ(RunCli(s + "submit demo.steps --params='{bad json' --watch"), 3);
  EXPECT_EQ(RunCli(s + "submit no.such.type"), 1);
  EXPECT_EQ(RunCli(s + "frobnicate"), 3);
  EXPECT_EQ(RunCli(s + "status"), 3);
  EXPECT_EQ(RunCli(s + "status 01m81rd5kq5g91qm659eqts4bn"), 1);
  EXPECT_EQ(RunCli("watch --help", &out), 0);
  EXPECT_NE(out.find("jobstream watch ID [--after=N]"), std::string::npos) << out;
  EXPECT_EQ(RunCli("--server=127.0.0.1:1 --reconnect_timeout=1s watch 01m81rd5kq5g91qm659eqts4bn"), 3);

  JobClient client(server->Channel());
  auto job = client.Submit(Demo(R"({"steps": ["long"], "step_ms": 60000})"));
  ASSERT_TRUE(job.ok());
  std::thread cancel([&] {
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_TRUE(client.Cancel(job->id()).ok());
  });
  EXPECT_EQ(RunCli(s + "watch " + job->id() + " --json"), 2);
  cancel.join();
}

}  // namespace
}  // namespace jobstream

namespace jobstream {
namespace {

struct Waited {
  grpc::Status status;
  v1::Job job;
  absl::Duration took;
};
Waited WaitJob(const std::shared_ptr<grpc::Channel>& channel, const std::string& id,
               double timeout_s, absl::Duration deadline = absl::Seconds(30)) {
  auto stub = v1::JobService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline));
  v1::WaitJobRequest request;
  request.set_job_id(id);
  request.mutable_timeout()->set_seconds(static_cast<int64_t>(timeout_s));
  request.mutable_timeout()->set_nanos(
      static_cast<int32_t>((timeout_s - static_cast<int64_t>(timeout_s)) * 1e9));
  Waited out;
  const absl::Time start = absl::Now();
  out.status = stub->WaitJob(&ctx, request, &out.job);
  out.took = absl::Now() - start;
  return out;
}

TEST_P(ServerTest, WaitJobReturnsWhenTheJobEndsOrTheTimeoutPasses) {
  auto server = Start();
  JobClient client(server->Channel());
  auto job = client.Submit(Demo(R"({"steps": ["a"], "step_ms": 1500, "ticks": 0})"));
  ASSERT_TRUE(job.ok()) << job.status();
  // The timeout passes first: the job as it stands, still running.
  Waited early = WaitJob(server->Channel(), job->id(), 0.3);
  ASSERT_TRUE(early.status.ok()) << early.status.error_message();
  EXPECT_FALSE(v1::IsFinished(early.job.state()));
  EXPECT_GE(early.took, absl::Milliseconds(250));
  // Many waiters, all answered at the end, with the finished job and its params.
  std::vector<std::thread> threads;
  std::vector<Waited> waited(20);
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] { waited[i] = WaitJob(server->Channel(), job->id(), 60); });
  }
  for (auto& t : threads) t.join();
  for (const Waited& w : waited) {
    ASSERT_TRUE(w.status.ok()) << w.status.error_message();
    EXPECT_EQ(w.job.state(), Job::SUCCEEDED);
    EXPECT_LT(w.took, absl::Seconds(5));
    EXPECT_TRUE(w.job.params().fields().contains("step_ms"));
  }
  // A finished job answers at once, whatever the timeout.
  Waited done = WaitJob(server->Channel(), job->id(), 60);
  EXPECT_EQ(done.job.state(), Job::SUCCEEDED);
  EXPECT_LT(done.took, absl::Seconds(1));
  // Bad input.
  EXPECT_EQ(WaitJob(server->Channel(), job->id(), 301).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(WaitJob(server->Channel(), job->id(), -1).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(WaitJob(server->Channel(), "nope", 1).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(WaitJob(server->Channel(), "01m8488yd72g1c1chq6xp84ke3", 1).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  // A caller that gives up leaves nothing waiting; a stop answers the waiting.
  auto queued = client.Submit(Demo(R"({"steps": ["a"], "step_ms": 60000, "ticks": 0})"));
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(WaitJob(server->Channel(), queued->id(), 60, absl::Milliseconds(200)).status.error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(300));
    server->Stop(SIGTERM);
  });
  Waited stopped = WaitJob(server->Channel(), queued->id(), 60);
  stopper.join();
  EXPECT_EQ(stopped.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stopped.status.error_message();
  EXPECT_LT(stopped.took, absl::Seconds(10));
}

}  // namespace
}  // namespace jobstream

namespace jobstream {
namespace {

TEST_F(RocksServerTest, ASecondServerOnTheSameDataDirIsRefusedAtStart) {
  auto first = Start();
  auto [code, out] = testing::RunCommand(absl::StrCat(
      testing::BinaryPath("server/jobstream-server"), " --listen=127.0.0.1:0 --data_dir=",
      dir_.sub("data"), " 2>&1"));
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("is in use by another jobstream-server"), std::string::npos) << out;
  std::ofstream(dir_.sub("file")) << "not a directory";
  std::tie(code, out) = testing::RunCommand(absl::StrCat(
      testing::BinaryPath("server/jobstream-server"), " --listen=127.0.0.1:0 --data_dir=",
      dir_.sub("file"), " 2>&1"));
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("is not a directory"), std::string::npos) << out;
  // The first one is unharmed.
  JobClient client(first->Channel());
  EXPECT_TRUE(client.List({}).ok());
}

}  // namespace
}  // namespace jobstream

namespace jobstream {
namespace {

TEST_P(ServerTest, ParamsAndMessageSizeLimitsSayWhichLimit) {
  std::ofstream(dir_.sub("config.json")) << R"({"types": [{"name": "any", "external": {}}]})";
  auto server = Start({"--max_message_bytes=2097152", "--max_params_bytes=1000",
                       "--config=" + dir_.sub("config.json")});
  JobClient client(server->Channel());
  auto with_params = [](size_t bytes) {
    v1::SubmitRequest request;
    request.set_type("any");
    (*request.mutable_params()->mutable_fields())["blob"].set_string_value(std::string(bytes, 'x'));
    return request;
  };
  EXPECT_TRUE(client.Submit(with_params(900)).ok());
  auto over_params = client.Submit(with_params(1200));
  EXPECT_TRUE(absl::IsInvalidArgument(over_params.status())) << over_params.status();
  EXPECT_NE(over_params.status().message().find("1000"), std::string::npos)
      << over_params.status();
  auto over_message = client.Submit(with_params(3 << 20));
  EXPECT_TRUE(absl::IsResourceExhausted(over_message.status())) << over_message.status();
  EXPECT_NE(over_message.status().message().find("2097152"), std::string::npos)
      << over_message.status();
  EXPECT_TRUE(client.List({}).ok());  // the server is fine
}

}  // namespace
}  // namespace jobstream
