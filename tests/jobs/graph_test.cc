// graph.h's decisions on records alone: when a WAITING job queues, waits on, or is
// settled by its policy; that a repeated or stale move changes nothing; and the checks of
// depends_on.
#include "server/jobs/graph.h"

#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::jobs {
namespace {

using v1::Job;
using v1::JobEvent;

constexpr char kA[] = "01aaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kB[] = "01bbbbbbbbbbbbbbbbbbbbbbbb";
constexpr char kC[] = "01cccccccccccccccccccccccc";

Job Dependency(const std::string& id, Job::State state) {
  Job job;
  job.set_id(id);
  job.set_state(state);
  if (state == Job::FAILED) job.mutable_error()->set_message("boom");
  return job;
}

Job Dependent(std::vector<std::string> on, Job::OnDependencyFailure policy =
                                               Job::ON_DEPENDENCY_FAILURE_UNSPECIFIED) {
  Job job;
  job.set_id("01dddddddddddddddddddddddd");
  job.set_state(Job::QUEUED);
  for (const std::string& id : on) job.add_depends_on(id);
  job.set_on_dependency_failure(policy);
  return job;
}

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

TEST(GraphTest, WaitsForWhatHasNotEndedAndQueuesWhenAllSucceeded) {
  Job job = Dependent({kA, kB, kC});
  Job created;
  const std::vector<Job> found = {Dependency(kA, Job::SUCCEEDED), Dependency(kB, Job::RUNNING),
                                  Dependency(kC, Job::QUEUED)};
  EXPECT_EQ(StartWaiting(job, found, kNow, &created), JobEvent::WAITING);
  EXPECT_EQ(created.state(), Job::WAITING);
  EXPECT_EQ(std::vector<std::string>(created.waiting_for().begin(), created.waiting_for().end()),
            (std::vector<std::string>{kB, kC}));

  const Job b = Dependency(kB, Job::SUCCEEDED), c = Dependency(kC, Job::SUCCEEDED);
  EXPECT_EQ(DependenciesEnded(job, {&b}, kNow), JobEvent::WAITING);
  EXPECT_EQ(job.waiting_for_size(), 1);
  EXPECT_EQ(DependenciesEnded(job, {&b}, kNow), JobEvent::TYPE_UNSPECIFIED) << "told twice";
  EXPECT_EQ(DependenciesEnded(job, {&c}, kNow), JobEvent::QUEUED);
  EXPECT_EQ(job.state(), Job::QUEUED);
  EXPECT_EQ(DependenciesEnded(job, {&c}, kNow), JobEvent::TYPE_UNSPECIFIED) << "moved on";
}

TEST(GraphTest, AllSucceededAtSubmitIsQueuedWithNoWaitingEvent) {
  Job job = Dependent({kA});
  Job created;
  EXPECT_EQ(StartWaiting(job, {Dependency(kA, Job::SUCCEEDED)}, kNow, &created),
            JobEvent::TYPE_UNSPECIFIED);
  EXPECT_EQ(created.state(), Job::QUEUED);
  EXPECT_EQ(created.waiting_for_size(), 0);
}

TEST(GraphTest, AFailureSettlesByPolicy) {
  const Job failed = Dependency(kA, Job::FAILED);
  {
    Job job = Dependent({kA, kB});
    Job created;
    EXPECT_EQ(StartWaiting(job, {failed, Dependency(kB, Job::RUNNING)}, kNow, &created),
              JobEvent::CANCELLED);
    EXPECT_EQ(created.state(), Job::WAITING) << "created waiting, then settled";
    EXPECT_EQ(job.state(), Job::CANCELLED);
    EXPECT_EQ(job.error().code(), 1);
    EXPECT_EQ(job.error().message(), absl::StrCat("dependency ", kA, " FAILED: boom"));
    EXPECT_EQ(job.error().details().fields().at("dependency_state").string_value(), "FAILED");
    EXPECT_EQ(job.waiting_for_size(), 0);
    EXPECT_TRUE(job.has_end_time());
  }
  {
    Job job = Dependent({kA}, Job::FAIL);
    Job created;
    EXPECT_EQ(StartWaiting(job, {Dependency(kA, Job::RUNNING)}, kNow, &created), JobEvent::WAITING);
    const Job cancelled = Dependency(kA, Job::CANCELLED);
    EXPECT_EQ(DependenciesEnded(job, {&cancelled}, kNow), JobEvent::FAILED);
    EXPECT_EQ(job.error().code(), 9);
    EXPECT_EQ(job.error().message(), absl::StrCat("dependency ", kA, " CANCELLED"));
  }
  {
    // RUN waits for every dependency to end, then queues however they ended.
    Job job = Dependent({kA, kB}, Job::RUN);
    Job created;
    EXPECT_EQ(StartWaiting(job, {failed, Dependency(kB, Job::RUNNING)}, kNow, &created),
              JobEvent::WAITING);
    EXPECT_EQ(job.waiting_for_size(), 1);
    const Job b = Dependency(kB, Job::CANCELLED);
    EXPECT_EQ(DependenciesEnded(job, {&b}, kNow), JobEvent::QUEUED);
  }
}

TEST(GraphTest, DependsOnIsChecked) {
  v1::SubmitRequest request;
  EXPECT_TRUE(ValidateDependsOn(request).ok());
  request.add_depends_on(kA);
  request.add_depends_on("01AAAAAAAAAAAAAAAAAAAAAAAA");
  absl::Status s = ValidateDependsOn(request);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("depends_on[1]"), std::string::npos) << s;
  request.set_depends_on(1, kA);
  s = ValidateDependsOn(request);
  EXPECT_NE(s.message().find("named twice"), std::string::npos) << s;
  request.set_depends_on(1, kB);
  EXPECT_TRUE(ValidateDependsOn(request).ok());
}

}  // namespace
}  // namespace jobstream::jobs
