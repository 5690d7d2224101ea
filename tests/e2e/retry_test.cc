// RetryJob and CancelJob's reason on the real binary and each store: a FAILED or
// CANCELLED job runs again under its id with a RETRIED event naming who asked and why, a
// watcher reading it from the start follows it through the old end to the new one, the
// retry survives a kill -9, a replay makes a new job linked to the old with edited
// params, and what may not be retried is refused, changing nothing.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "gtest/gtest.h"
#include "tests/support/job_helpers.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

class RetryTest : public testing::StoreTest {
 protected:
  std::unique_ptr<ServerProcess> Start(const std::string& listen = "") {
    std::vector<std::string> flags = StoreFlags();
    if (!listen.empty()) flags.push_back("--listen=" + listen);
    return std::make_unique<ServerProcess>(dir_.sub("data"), flags);
  }
  static grpc::Status Retry(ServerProcess& s, const v1::RetryJobRequest& request, Job* job) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return v1::JobService::NewStub(s.Channel())->RetryJob(&ctx, request, job);
  }
  static v1::RetryJobRequest RetryOf(const std::string& id, const std::string& reason = "") {
    v1::RetryJobRequest r;
    r.set_job_id(id);
    r.set_reason(reason);
    return r;
  }
  // Every event of the job from the start, through the stream's own end.
  static std::vector<JobEvent> AllEvents(ServerProcess& s, const std::string& id) {
    testing::Stream all = testing::WatchOnce(s.Channel(), id, 0, absl::Seconds(60));
    EXPECT_TRUE(all.status.ok()) << all.status.error_message();
    return all.events;
  }
  static Job Ended(ServerProcess& s, const std::string& id) {
    auto job = client::JobClient(s.Channel()).Watch(id, 0, [](const JobEvent&) {});
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }

  testing::TempDir dir_;
};
JOBSTREAM_BOTH_STORES(RetryTest);

constexpr char kFails[] = R"({"steps": ["a", "b"], "step_ms": 0, "ticks": 0, "fail_at": "b"})";

TEST_P(RetryTest, AFailedJobRunsAgainUnderItsIdAndAWatcherFollowsItThroughBothEnds) {
  auto server = Start();
  client::JobClient client(server->Channel());
  v1::SubmitRequest request = testing::SubmitRequestOf("demo.steps", kFails);
  request.set_max_attempts(1);
  auto job = client.Submit(request);
  ASSERT_TRUE(job.ok()) << job.status();
  const Job failed = Ended(*server, job->id());
  ASSERT_EQ(failed.state(), Job::FAILED);
  EXPECT_EQ(failed.series(), 1);
  const int64_t first_end = failed.last_sequence();

  Job retried;
  ASSERT_TRUE(Retry(*server, RetryOf(job->id(), "the database is back"), &retried).ok());
  EXPECT_EQ(retried.id(), job->id());
  EXPECT_EQ(retried.state(), Job::QUEUED);
  EXPECT_EQ(retried.series(), 2);
  EXPECT_EQ(retried.attempt(), 0);
  EXPECT_FALSE(retried.has_end_time());
  EXPECT_EQ(retried.last_action().action(), "retry");
  EXPECT_EQ(retried.last_action().reason(), "the database is back");
  EXPECT_EQ(retried.last_action().sequence(), first_end + 1);
  EXPECT_GT(retried.last_action().time().seconds(), 0);

  // It runs again (and fails again: its params say so) as attempt 1 of series 2.
  const Job again = Ended(*server, job->id());
  EXPECT_EQ(again.state(), Job::FAILED);
  EXPECT_EQ(again.series(), 2);
  EXPECT_EQ(again.attempt(), 1);

  // Read from the start, the stream goes through the first end to the last, dense.
  std::vector<JobEvent> events = AllEvents(*server, job->id());
  ASSERT_EQ(events.size(), static_cast<size_t>(again.last_sequence()));
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1)) << "gap or repeat at " << i;
  }
  const JobEvent& mark = events[first_end];
  EXPECT_EQ(events[first_end - 1].type(), JobEvent::FAILED);
  EXPECT_EQ(mark.type(), JobEvent::RETRIED);
  EXPECT_EQ(mark.action().action(), "retry");
  EXPECT_EQ(mark.action().reason(), "the database is back");
  EXPECT_EQ(mark.status().state(), Job::QUEUED);
  EXPECT_EQ(events.back().type(), JobEvent::FAILED);
  for (const JobEvent& e : events) {
    if (e.sequence() != first_end + 1) {
      EXPECT_FALSE(e.has_action()) << e.ShortDebugString();
    }
  }
  // Resumed after the first end, a watcher gets the retry and what followed.
  testing::Stream rest = testing::WatchOnce(server->Channel(), job->id(), first_end);
  ASSERT_TRUE(rest.status.ok());
  ASSERT_FALSE(rest.events.empty());
  EXPECT_EQ(rest.events.front().type(), JobEvent::RETRIED);
  EXPECT_EQ(rest.events.back().sequence(), again.last_sequence());
  // The retry was written before it was answered: a kill -9 and a restart keep it.
  const std::string address = server->address();
  ASSERT_TRUE(Retry(*server, RetryOf(job->id()), &retried).ok());
  EXPECT_EQ(retried.series(), 3);
  server->Kill();
  server = Start(address);
  const Job third = Ended(*server, job->id());
  EXPECT_EQ(third.series(), 3);
  EXPECT_EQ(third.state(), Job::FAILED);
  EXPECT_EQ(third.attempt(), 1);
}

TEST_P(RetryTest, ACancelledJobKeepsWhoCancelledItAndWhyAndMayBeRetried) {
  auto server = Start();
  client::JobClient client(server->Channel());
  v1::SubmitRequest request =
      testing::SubmitRequestOf("demo.steps", R"({"steps": ["a"], "step_ms": 0, "ticks": 0})");
  request.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
  auto job = client.Submit(request);
  ASSERT_TRUE(job.ok());
  {
    grpc::ClientContext ctx;
    v1::CancelJobRequest cancel;
    cancel.set_job_id(job->id());
    cancel.set_reason("submitted by mistake");
    Job cancelled;
    ASSERT_TRUE(v1::JobService::NewStub(server->Channel())->CancelJob(&ctx, cancel, &cancelled).ok());
    EXPECT_EQ(cancelled.state(), Job::CANCELLED);
    EXPECT_EQ(cancelled.last_action().action(), "cancel");
    EXPECT_EQ(cancelled.last_action().reason(), "submitted by mistake");
  }
  std::vector<JobEvent> events = AllEvents(*server, job->id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type(), JobEvent::CANCELLED);
  EXPECT_EQ(events.back().action().reason(), "submitted by mistake");
  // Retried, it runs now: its run_at is not kept.
  Job retried;
  ASSERT_TRUE(Retry(*server, RetryOf(job->id()), &retried).ok());
  EXPECT_FALSE(retried.has_run_at());
  EXPECT_EQ(Ended(*server, job->id()).state(), Job::SUCCEEDED);
}

TEST_P(RetryTest, AReplayIsANewJobLinkedToTheOldWithEditedParams) {
  auto server = Start();
  client::JobClient client(server->Channel());
  v1::SubmitRequest request = testing::SubmitRequestOf("demo.steps", kFails);
  request.set_max_attempts(1);
  (*request.mutable_labels())["team"] = "billing";
  request.set_priority(7);
  auto job = client.Submit(request);
  ASSERT_TRUE(job.ok());
  const Job failed = Ended(*server, job->id());
  ASSERT_EQ(failed.state(), Job::FAILED);

  v1::RetryJobRequest replay = RetryOf(job->id(), "without the failing step");
  replay.set_as_new(true);
  (*replay.mutable_params()->mutable_fields())["steps"].mutable_list_value()->add_values()->set_string_value("a");
  Job made;
  ASSERT_TRUE(Retry(*server, replay, &made).ok());
  EXPECT_NE(made.id(), job->id());
  EXPECT_EQ(made.replay_of(), job->id());
  EXPECT_EQ(made.labels().at("jobstream/replay_of"), job->id());
  EXPECT_EQ(made.labels().at("team"), "billing");
  EXPECT_EQ(made.priority(), 7);
  EXPECT_EQ(made.last_action().action(), "replay");
  const Job done = Ended(*server, made.id());
  EXPECT_EQ(done.state(), Job::SUCCEEDED) << done.ShortDebugString();
  std::vector<JobEvent> events = AllEvents(*server, made.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().type(), JobEvent::CREATED);
  EXPECT_EQ(events.front().action().reason(), "without the failing step");
  // The old job is as it was; replays of it are found by their label.
  auto old = client.GetStatus(job->id());
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->last_sequence(), failed.last_sequence());
  v1::ListJobsRequest list;
  (*list.mutable_labels())["jobstream/replay_of"] = job->id();
  auto replays = client.List(list);
  ASSERT_TRUE(replays.ok());
  ASSERT_EQ(replays->jobs_size(), 1);
  EXPECT_EQ(replays->jobs(0).id(), made.id());
  // A SUCCEEDED job may be replayed too (with its own params).
  replay = RetryOf(made.id());
  replay.set_as_new(true);
  Job twice;
  ASSERT_TRUE(Retry(*server, replay, &twice).ok());
  EXPECT_EQ(twice.replay_of(), made.id());
}

TEST_P(RetryTest, WhatMayNotBeRetriedIsRefusedAndChangesNothing) {
  auto server = Start();
  client::JobClient client(server->Channel());
  auto ok_job = client.Submit(
      testing::SubmitRequestOf("demo.steps", R"({"steps": ["a"], "step_ms": 0, "ticks": 0})"));
  ASSERT_TRUE(ok_job.ok());
  const Job succeeded = Ended(*server, ok_job->id());
  auto slow = client.Submit(
      testing::SubmitRequestOf("demo.steps", R"({"steps": ["a"], "step_ms": 30000, "ticks": 0})"));
  ASSERT_TRUE(slow.ok());
  v1::SubmitRequest failing = testing::SubmitRequestOf("demo.steps", kFails);
  failing.set_max_attempts(1);
  auto failed = client.Submit(failing);
  ASSERT_TRUE(failed.ok());
  const Job failed_job = Ended(*server, failed->id());

  struct Case {
    std::string what;
    v1::RetryJobRequest request;
    grpc::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  cases.push_back({"succeeded", RetryOf(ok_job->id()), grpc::FAILED_PRECONDITION, "replay"});
  cases.push_back({"live", RetryOf(slow->id()), grpc::FAILED_PRECONDITION, "FAILED or CANCELLED"});
  cases.push_back({"live replay", RetryOf(slow->id()), grpc::FAILED_PRECONDITION, "ended"});
  cases.back().request.set_as_new(true);
  cases.push_back({"unknown", RetryOf("01hzzzzzzzzzzzzzzzzzzzzzzz"), grpc::NOT_FOUND, ""});
  cases.push_back({"malformed", RetryOf("no such id!"), grpc::INVALID_ARGUMENT, "job_id"});
  cases.push_back({"control characters", RetryOf(failed->id(), "a\nb"), grpc::INVALID_ARGUMENT,
                   "reason"});
  cases.push_back({"long reason", RetryOf(failed->id(), std::string(501, 'x')),
                   grpc::INVALID_ARGUMENT, "500"});
  cases.push_back({"params without as_new", RetryOf(failed->id()), grpc::INVALID_ARGUMENT,
                   "as_new"});
  (*cases.back().request.mutable_params()->mutable_fields())["steps"].set_string_value("x");
  cases.push_back({"params the type rejects", RetryOf(failed->id()), grpc::INVALID_ARGUMENT,
                   "steps"});
  cases.back().request.set_as_new(true);
  (*cases.back().request.mutable_params()->mutable_fields())["steps"].set_number_value(3);
  for (const Case& c : cases) {
    Job answer;
    grpc::Status status = Retry(*server, c.request, &answer);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.says), std::string::npos)
        << c.what << ": " << status.error_message();
  }
  // Nothing moved.
  EXPECT_EQ(client.GetStatus(ok_job->id())->last_sequence(), succeeded.last_sequence());
  EXPECT_EQ(client.GetStatus(failed->id())->last_sequence(), failed_job.last_sequence());
  EXPECT_EQ(client.GetStatus(failed->id())->state(), Job::FAILED);
  v1::ListJobsRequest everything;
  auto listed = client.List(everything);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 3) << "no replay was made";
  EXPECT_TRUE(client.Cancel(slow->id()).ok());
}

}  // namespace
}  // namespace jobstream
