// Job graphs on the real binary and each store: a diamond runs in order; a dependency that
// fails settles its dependents by their policy (CANCEL with the cause, FAIL, RUN), down the
// graph; a WAITING job can be cancelled; dependencies hold across a kill -9; and bad
// depends_on is refused precisely with nothing written.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "tests/support/job_test.h"

namespace jobstream {
namespace {

using v1::Job;
using v1::JobEvent;

class GraphTest : public testing::JobTest {
 protected:
  static v1::SubmitRequest After(v1::SubmitRequest request, std::vector<std::string> ids,
                                 Job::OnDependencyFailure policy = Job::ON_DEPENDENCY_FAILURE_UNSPECIFIED) {
    for (const std::string& id : ids) request.add_depends_on(id);
    request.set_on_dependency_failure(policy);
    return request;
  }
};
JOBSTREAM_BOTH_STORES(GraphTest);

TEST_P(GraphTest, ADiamondRunsInOrderAndSaysWhatEachJobWaitsFor) {
  Start();
  const Job a = MustSubmit(Demo(400));
  const Job b = MustSubmit(After(Demo(100), {a.id()}));
  const Job c = MustSubmit(After(Demo(900), {a.id()}));
  const Job d = MustSubmit(After(Demo(50), {b.id(), c.id()}));
  // Answered as created: WAITING for what has not ended.
  EXPECT_EQ(b.state(), Job::WAITING);
  EXPECT_EQ(std::vector<std::string>(b.waiting_for().begin(), b.waiting_for().end()),
            std::vector<std::string>{a.id()});
  EXPECT_EQ(d.state(), Job::WAITING);
  EXPECT_EQ(d.waiting_for_size(), 2);
  EXPECT_EQ(d.depends_on_size(), 2);

  const Job d_end = Finished(d.id());
  ASSERT_EQ(d_end.state(), Job::SUCCEEDED) << d_end.error().message();
  const Job a_end = Finished(a.id()), b_end = Finished(b.id()), c_end = Finished(c.id());
  for (const Job* j : {&a_end, &b_end, &c_end}) EXPECT_EQ(j->state(), Job::SUCCEEDED);
  auto t = [](const google::protobuf::Timestamp& ts) { return v1::ToTime(ts); };
  EXPECT_GE(t(b_end.start_time()), t(a_end.end_time()));
  EXPECT_GE(t(c_end.start_time()), t(a_end.end_time()));
  EXPECT_GE(t(d_end.start_time()), t(b_end.end_time()));
  EXPECT_GE(t(d_end.start_time()), t(c_end.end_time()));
  EXPECT_EQ(d_end.waiting_for_size(), 0);

  // D: created waiting for both; waiting for C alone once B succeeded; queued once C did.
  const std::vector<JobEvent> events = Events(d.id());
  const std::vector<JobEvent::Type> want = {JobEvent::CREATED, JobEvent::WAITING,
                                            JobEvent::WAITING, JobEvent::QUEUED,
                                            JobEvent::STARTED};
  ASSERT_GE(events.size(), want.size());
  const std::vector<JobEvent::Type> types = Types(events);
  EXPECT_EQ(std::vector<JobEvent::Type>(types.begin(), types.begin() + 5), want);
  EXPECT_EQ(events[0].status().state(), Job::WAITING);
  EXPECT_EQ(events[1].status().waiting_for_size(), 2);
  ASSERT_EQ(events[2].status().waiting_for_size(), 1);
  EXPECT_EQ(events[2].status().waiting_for(0), c.id());
  EXPECT_EQ(events[3].status().state(), Job::QUEUED);
  EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED);
}

TEST_P(GraphTest, AFailedDependencySettlesItsDependentsByPolicyDownTheGraph) {
  Start();
  const Job b = MustSubmit(Demo(300, /*fail=*/true));
  const Job ok = MustSubmit(Demo(100));
  const Job cancel = MustSubmit(After(Demo(10), {ok.id(), b.id()}));  // CANCEL by default
  const Job below = MustSubmit(After(Demo(10), {cancel.id()}, Job::RUN));
  const Job fail = MustSubmit(After(Demo(10), {b.id()}, Job::FAIL));
  const Job run = MustSubmit(After(Demo(10), {b.id(), ok.id()}, Job::RUN));

  ASSERT_EQ(Finished(b.id()).state(), Job::FAILED);
  const Job cancelled = Finished(cancel.id());
  EXPECT_EQ(cancelled.state(), Job::CANCELLED);
  EXPECT_EQ(cancelled.error().code(), 1);  // CANCELLED
  EXPECT_NE(cancelled.error().message().find(b.id()), std::string::npos)
      << cancelled.error().message();
  EXPECT_NE(cancelled.error().message().find("FAILED"), std::string::npos);
  EXPECT_EQ(cancelled.error().details().fields().at("dependency").string_value(), b.id());
  EXPECT_EQ(cancelled.attempt(), 0) << "never started";
  EXPECT_EQ(Types(Events(cancel.id())).back(), JobEvent::CANCELLED);

  const Job failed = Finished(fail.id());
  EXPECT_EQ(failed.state(), Job::FAILED);
  EXPECT_EQ(failed.error().code(), 9);  // FAILED_PRECONDITION
  EXPECT_NE(failed.error().message().find(b.id()), std::string::npos);

  // RUN: runs once every dependency ended, however it ended — also below a cancelled job.
  const Job ran = Finished(run.id());
  EXPECT_EQ(ran.state(), Job::SUCCEEDED) << ran.error().message();
  EXPECT_GE(v1::ToTime(ran.start_time()), v1::ToTime(Finished(ok.id()).end_time()));
  EXPECT_EQ(Finished(below.id()).state(), Job::SUCCEEDED);

  // A dependency that had failed before the Submit settles it at once.
  Job late;
  ASSERT_TRUE(Submit(After(Demo(10), {b.id()}), &late).ok());
  EXPECT_EQ(late.state(), Job::CANCELLED);
  EXPECT_EQ(Types(Events(late.id())),
            (std::vector<JobEvent::Type>{JobEvent::CREATED, JobEvent::CANCELLED}));
  // One that had succeeded counts as met: queued at once, no WAITING.
  Job queued;
  ASSERT_TRUE(Submit(After(Demo(10), {ok.id()}), &queued).ok());
  EXPECT_EQ(queued.state(), Job::QUEUED);
  EXPECT_EQ(Finished(queued.id()).state(), Job::SUCCEEDED);
  EXPECT_EQ(Types(Events(queued.id()))[1], JobEvent::STARTED);
}

TEST_P(GraphTest, AWaitingJobCanBeCancelledListedAndNotDeleted) {
  Start();
  const Job a = MustSubmit(Demo(60000));  // runs until cancelled: W waits however slow the test
  const Job w = MustSubmit(After(Demo(10), {a.id()}));
  const Job below = MustSubmit(After(Demo(10), {w.id()}));
  {
    grpc::ClientContext ctx;
    v1::ListJobsRequest request;
    request.add_states(Job::WAITING);
    v1::ListJobsResponse response;
    ASSERT_TRUE(jobs_->ListJobs(&ctx, request, &response).ok());
    EXPECT_EQ(response.jobs_size(), 2);
  }
  {
    grpc::ClientContext ctx;
    v1::DeleteJobRequest request;
    request.set_job_id(w.id());
    v1::DeleteJobResponse response;
    EXPECT_EQ(jobs_->DeleteJob(&ctx, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  const Job cancelled = Cancel(w.id());
  EXPECT_EQ(cancelled.state(), Job::CANCELLED);
  EXPECT_EQ(cancelled.waiting_for_size(), 0);
  const Job below_end = Finished(below.id());
  EXPECT_EQ(below_end.state(), Job::CANCELLED);
  EXPECT_NE(below_end.error().message().find(w.id()), std::string::npos);
  Cancel(a.id());
  EXPECT_EQ(Finished(a.id()).state(), Job::CANCELLED);
  EXPECT_EQ(Finished(w.id()).attempt(), 0) << "a cancelled job never runs";
}

TEST_P(GraphTest, DependenciesHoldAcrossAKill9) {
  Start();
  const Job a = MustSubmit(Demo(60000));
  const Job d = MustSubmit(After(Demo(10), {a.id()}));
  const Job e = MustSubmit(After(Demo(10), {d.id()}));
  Running(a.id());
  server_->Kill();
  Start();
  // A's attempt was cut short (max_attempts 1: it FAILED), so D and E are cancelled.
  EXPECT_EQ(Finished(a.id()).state(), Job::FAILED);
  EXPECT_EQ(Finished(d.id()).state(), Job::CANCELLED);
  EXPECT_EQ(Finished(e.id()).state(), Job::CANCELLED);

  // Retries allowed: A runs again after the restart, and its dependents then run.
  v1::SubmitRequest again = Demo(2000);  // killed at once when seen running
  again.set_max_attempts(3);
  const Job a2 = MustSubmit(again);
  const Job d2 = MustSubmit(After(Demo(10), {a2.id()}));
  Running(a2.id());
  server_->Kill();
  Start();
  const Job a2_end = Finished(a2.id());
  EXPECT_EQ(a2_end.state(), Job::SUCCEEDED);
  EXPECT_EQ(a2_end.attempt(), 2);
  const Job d2_end = Finished(d2.id());
  EXPECT_EQ(d2_end.state(), Job::SUCCEEDED) << d2_end.error().message();
  EXPECT_GE(v1::ToTime(d2_end.start_time()), v1::ToTime(a2_end.end_time()));
}

TEST_P(GraphTest, BadDependsOnIsRefusedNamingTheFieldAndWritesNothing) {
  Start();
  const Job a = MustSubmit(Demo(10));
  const int64_t before = JobCount();
  struct Case {
    std::string name;
    v1::SubmitRequest request;
    grpc::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  cases.push_back({"unknown", After(Demo(10), {a.id(), "01aaaaaaaaaaaaaaaaaaaaaaaa"}),
                   grpc::StatusCode::NOT_FOUND, "depends_on[1]: job 01aaaaaaaaaaaaaaaaaaaaaaaa not found"});
  cases.push_back({"malformed", After(Demo(10), {"nope"}), grpc::StatusCode::INVALID_ARGUMENT,
                   "depends_on[0]: job_id \"nope\" is not a job id"});
  cases.push_back({"twice", After(Demo(10), {a.id(), a.id()}),
                   grpc::StatusCode::INVALID_ARGUMENT, "depends_on[1]: job " + a.id() + " is named twice"});
  v1::SubmitRequest many = Demo(10);
  for (int i = 0; i < 101; ++i) many.add_depends_on(a.id());
  cases.push_back({"too many", many, grpc::StatusCode::INVALID_ARGUMENT,
                   "depends_on names 101 jobs; at most 100"});
  v1::SubmitRequest policy_alone = Demo(10);
  policy_alone.set_on_dependency_failure(Job::RUN);
  cases.push_back({"policy alone", policy_alone, grpc::StatusCode::INVALID_ARGUMENT,
                   "on_dependency_failure is set but depends_on is empty"});
  v1::SubmitRequest bad_policy = After(Demo(10), {a.id()});
  bad_policy.set_on_dependency_failure(static_cast<Job::OnDependencyFailure>(42));
  cases.push_back({"unknown policy", bad_policy, grpc::StatusCode::INVALID_ARGUMENT,
                   "on_dependency_failure 42 is not one of CANCEL, FAIL, RUN"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Job ignored;
    grpc::Status s = Submit(c.request, &ignored);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_NE(s.error_message().find(c.says), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(JobCount(), before) << "nothing written";

  // The same request_id twice: one job, answered both times.
  v1::SubmitRequest keyed = After(Demo(10), {a.id()});
  keyed.set_request_id("graph-once");
  const Job first = MustSubmit(keyed), second = MustSubmit(keyed);
  EXPECT_EQ(first.id(), second.id());
  EXPECT_EQ(JobCount(), before + 1);
}

TEST_P(GraphTest, TheCliSubmitsAfterJobsAndListsWaitingOnes) {
  Start();
  const Job a = MustSubmit(Demo(60000));  // until cancelled below
  const Job b = MustSubmit(Demo(10));
  std::string out;
  ASSERT_EQ(Cli("submit demo.steps --params='{\"steps\":[\"x\"]}' --after=" + a.id() + "," +
                    b.id() + " --on_dependency_failure=run --json",
                &out),
            0)
      << out;
  Job waiting;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &waiting).ok()) << out;
  EXPECT_EQ(waiting.state(), Job::WAITING);
  EXPECT_EQ(waiting.on_dependency_failure(), Job::RUN);
  EXPECT_EQ(waiting.depends_on_size(), 2);
  Events(b.id());  // b has ended: the list names only a as awaited
  const std::string awaits_a = "\"waitingFor\":[\"" + a.id() + "\"]";
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    ASSERT_EQ(Cli("list --state=WAITING --json", &out), 0) << out;
  } while (out.find(awaits_a) == std::string::npos && absl::Now() < deadline);
  EXPECT_NE(out.find(waiting.id()), std::string::npos) << out;
  EXPECT_NE(out.find(awaits_a), std::string::npos) << out;
  Cancel(a.id());  // on_dependency_failure=run: it runs now
  // watch follows it through WAITING to its end.
  ASSERT_EQ(Cli("watch " + waiting.id() + " --json", &out), 0) << out;
  EXPECT_NE(out.find("\"type\":\"QUEUED\""), std::string::npos) << out;
  EXPECT_EQ(Cli("submit demo.steps --after=" + b.id() + " --on_dependency_failure=maybe", &out), 3)
      << out;
  EXPECT_NE(out.find("--on_dependency_failure takes cancel, fail or run"), std::string::npos);
  EXPECT_EQ(Cli("watch " + waiting.id() + " --after=x", &out), 3) << out;
  EXPECT_EQ(Cli("submit demo.steps --after=01aaaaaaaaaaaaaaaaaaaaaaaa", &out), 1) << out;
  EXPECT_NE(out.find("NOT_FOUND: depends_on[0]: job 01aaaaaaaaaaaaaaaaaaaaaaaa not found"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace jobstream
