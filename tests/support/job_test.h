// Suites about jobs on the real binary and each store: a server on the test's store, demo
// jobs to submit, and what a test reads back (the job once finished, its whole log).
//
//   class GraphTest : public testing::JobTest {};
//   TEST_P(GraphTest, ...) { Start(); Job a = MustSubmit(Demo(100)); ... }
//   JOBSTREAM_BOTH_STORES(GraphTest);
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream::testing {

using v1::Job;
using v1::JobEvent;

class JobTest : public StoreTest {
 protected:
  void Start(const std::vector<std::string>& extra_flags = {}) {
    std::vector<std::string> flags = StoreFlags();
    flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
    if (server_) flags.push_back("--listen=" + server_->address());
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    jobs_ = v1::JobService::NewStub(server_->Channel());
  }

  // A demo job of one step lasting `step_ms`; if `fail`, failing (for good) as it starts.
  static v1::SubmitRequest Demo(int step_ms, bool fail = false) {
    v1::SubmitRequest request;
    request.set_type("demo.steps");
    google::protobuf::util::JsonStringToMessage(
        absl::StrCat(R"({"steps": ["work"], "ticks": 0, "step_ms": )", step_ms,
                     fail ? R"(, "fail_at": "work")" : "", "}"),
        request.mutable_params());
    request.set_max_attempts(1);
    return request;
  }

  grpc::Status Submit(const v1::SubmitRequest& request, Job* job) {
    grpc::ClientContext ctx;
    return jobs_->Submit(&ctx, request, job);
  }
  Job MustSubmit(const v1::SubmitRequest& request) {
    Job job;
    grpc::Status s = Submit(request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  // The job once it has finished (WaitJob, up to `seconds`, at most 300).
  Job Finished(const std::string& id, int seconds = 60) {
    grpc::ClientContext ctx;
    v1::WaitJobRequest request;
    request.set_job_id(id);
    request.mutable_timeout()->set_seconds(seconds);
    Job job;
    grpc::Status s = jobs_->WaitJob(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(v1::IsFinished(job.state())) << id << " is " << Job::State_Name(job.state());
    return job;
  }

  // The job once it is RUNNING (polled, up to 60 s): for a test that must act while it runs.
  Job Running(const std::string& id) {
    Job job;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    do {
      grpc::ClientContext ctx;
      v1::GetStatusRequest request;
      request.set_job_id(id);
      grpc::Status s = jobs_->GetStatus(&ctx, request, &job);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || job.state() == Job::RUNNING) return job;
      absl::SleepFor(absl::Milliseconds(10));
    } while (absl::Now() < deadline);
    ADD_FAILURE() << id << " never ran; it is " << Job::State_Name(job.state());
    return job;
  }

  Job Cancel(const std::string& id) {
    grpc::ClientContext ctx;
    v1::CancelJobRequest request;
    request.set_job_id(id);
    Job job;
    grpc::Status s = jobs_->CancelJob(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  // Every event of a finished job, in order.
  std::vector<JobEvent> Events(const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::WatchJobRequest request;
    request.set_job_id(id);
    auto reader = jobs_->WatchJob(&ctx, request);
    std::vector<JobEvent> events;
    JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i) + 1) << "dense from 1";
    }
    return events;
  }
  static std::vector<JobEvent::Type> Types(const std::vector<JobEvent>& events) {
    std::vector<JobEvent::Type> types;
    for (const JobEvent& e : events) types.push_back(e.type());
    return types;
  }

  // Runs the jobstream CLI against the server: its exit code; `out` gets stdout and stderr.
  int Cli(const std::string& args, std::string* out) {
    auto [code, text] = RunCommand(BinaryPath("client/jobstream") + " --server=" +
                                   server_->address() + " " + args + " 2>&1");
    *out = text;
    return code;
  }

  int64_t JobCount() {
    grpc::ClientContext ctx;
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    v1::ListJobsResponse response;
    EXPECT_TRUE(jobs_->ListJobs(&ctx, request, &response).ok());
    return response.jobs_size();
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
};

}  // namespace jobstream::testing
