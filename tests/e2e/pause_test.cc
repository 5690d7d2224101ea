// PauseType / ResumeType on the real binary and each store: a paused type's queued jobs
// stay queued (no lease, no in-server start) while running ones finish and Submit still
// queues; the pause survives a restart and shows in ListJobTypes; a resume lets them go;
// bad input changes nothing; on PostgreSQL, a pause asked of one server holds on another
// at once.
#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/job_helpers.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using testing::ServerProcess;
using v1::Job;

class PauseTest : public testing::StoreTest {
 protected:
  std::unique_ptr<ServerProcess> Start(const std::string& server_id = "",
                                       const std::string& listen = "") {
    std::FILE* f = std::fopen(dir_.sub("config.json").c_str(), "w");
    std::fputs(R"({"types": [{"name": "report", "external": {"leaseDuration": "30s"}}]})", f);
    std::fclose(f);
    std::vector<std::string> flags = StoreFlags();
    flags.push_back("--config=" + dir_.sub("config.json"));
    if (!server_id.empty()) flags.push_back("--server_id=" + server_id);
    if (!listen.empty()) flags.push_back("--listen=" + listen);
    return std::make_unique<ServerProcess>(dir_.sub("data"), flags);
  }

  static grpc::Status Pause(ServerProcess& s, const std::string& type, const std::string& reason,
                            v1::JobTypeInfo* info) {
    grpc::ClientContext ctx;
    v1::PauseTypeRequest r;
    r.set_type(type);
    r.set_reason(reason);
    return v1::JobService::NewStub(s.Channel())->PauseType(&ctx, r, info);
  }
  static grpc::Status Resume(ServerProcess& s, const std::string& type, v1::JobTypeInfo* info) {
    grpc::ClientContext ctx;
    v1::ResumeTypeRequest r;
    r.set_type(type);
    return v1::JobService::NewStub(s.Channel())->ResumeType(&ctx, r, info);
  }
  static v1::JobTypeInfo TypeInfo(ServerProcess& s, const std::string& type) {
    grpc::ClientContext ctx;
    v1::ListJobTypesResponse types;
    EXPECT_TRUE(
        v1::JobService::NewStub(s.Channel())->ListJobTypes(&ctx, v1::ListJobTypesRequest(), &types).ok());
    for (const v1::JobTypeInfo& t : types.types()) {
      if (t.name() == type) return t;
    }
    ADD_FAILURE() << "no type " << type;
    return v1::JobTypeInfo();
  }
  // Jobs leased for "report" within `wait` (up to 10).
  static std::vector<std::string> Lease(ServerProcess& s, double wait) {
    grpc::ClientContext ctx;
    v1::LeaseJobRequest r;
    r.add_types("report");
    r.set_worker_id("w");
    r.set_max_jobs(10);
    r.mutable_wait()->set_seconds(static_cast<int64_t>(wait));
    r.mutable_wait()->set_nanos(static_cast<int32_t>((wait - static_cast<int64_t>(wait)) * 1e9));
    v1::LeaseJobResponse response;
    grpc::Status status = v1::WorkerService::NewStub(s.Channel())->LeaseJob(&ctx, r, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> ids;
    for (const auto& j : response.jobs()) ids.push_back(j.job().id());
    return ids;
  }
  static Job Submit(ServerProcess& s, const std::string& type, const std::string& params = "{}") {
    auto job = client::JobClient(s.Channel()).Submit(testing::SubmitRequestOf(type, params));
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  static Job::State StateOf(ServerProcess& s, const std::string& id) {
    auto job = client::JobClient(s.Channel()).GetStatus(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->state() : Job::STATE_UNSPECIFIED;
  }

  testing::TempDir dir_;
};
JOBSTREAM_BOTH_STORES(PauseTest);

TEST_P(PauseTest, APausedTypesJobsWaitAcrossARestartUntilItIsResumed) {
  auto server = Start();
  // A demo job running when its type is paused runs on to its end.
  const Job running = Submit(*server, "demo.steps", R"({"steps": ["a"], "step_ms": 600})");
  for (int i = 0; i < 500 && StateOf(*server, running.id()) != Job::RUNNING; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  v1::JobTypeInfo info;
  ASSERT_TRUE(Pause(*server, "report", "the mail relay is down", &info).ok());
  EXPECT_EQ(info.name(), "report");
  EXPECT_EQ(info.pause().reason(), "the mail relay is down");
  EXPECT_EQ(info.pause().by(), "") << "a server without tokens: nobody in particular";
  EXPECT_GT(info.pause().time().seconds(), 0);
  ASSERT_TRUE(Pause(*server, "demo.steps", "", &info).ok());
  EXPECT_TRUE(info.has_pause());
  // Submit still queues; nothing of either type starts.
  const Job a = Submit(*server, "report"), b = Submit(*server, "report");
  const Job demo = Submit(*server, "demo.steps", R"({"steps": ["a"], "step_ms": 0})");
  EXPECT_TRUE(Lease(*server, 1.0).empty()) << "a paused type's jobs are not leased";
  // What ran goes on to its end (waited for: a loaded machine may take a while).
  auto ran = client::JobClient(server->Channel()).Watch(running.id(), 0, [](const auto&) {});
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(ran->state(), Job::SUCCEEDED) << "what ran went on";
  EXPECT_EQ(StateOf(*server, demo.id()), Job::QUEUED) << "nor started in the server";
  EXPECT_EQ(TypeInfo(*server, "report").queued(), 2);

  // Durable: the pause outlives the server.
  const std::string address = server->address();
  server.reset();  // SIGKILL
  server = Start("", address);
  EXPECT_EQ(TypeInfo(*server, "report").pause().reason(), "the mail relay is down");
  EXPECT_TRUE(Lease(*server, 0.5).empty());
  EXPECT_EQ(StateOf(*server, demo.id()), Job::QUEUED);

  // A worker waiting on the paused type gets the jobs once it is resumed.
  std::vector<std::string> leased;
  std::thread waiter([&] { leased = Lease(*server, 10); });
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(Resume(*server, "report", &info).ok());
  EXPECT_FALSE(info.has_pause());
  waiter.join();
  std::sort(leased.begin(), leased.end());
  EXPECT_EQ(leased, (std::vector<std::string>{a.id(), b.id()}));
  ASSERT_TRUE(Resume(*server, "demo.steps", &info).ok());
  ASSERT_TRUE(Resume(*server, "demo.steps", &info).ok()) << "resuming twice is no error";
  auto finished = client::JobClient(server->Channel()).Watch(demo.id(), 0, [](const auto&) {});
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->state(), Job::SUCCEEDED);
}

TEST_P(PauseTest, BadInputIsRefusedAndChangesNothing) {
  auto server = Start();
  v1::JobTypeInfo info;
  grpc::Status s = Pause(*server, "reprot", "", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "unknown job type \"reprot\"; known types: demo.steps, report");
  s = Resume(*server, "", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "type is required; known types: demo.steps, report");
  s = Pause(*server, "report", std::string(501, 'x'), &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "reason has 501 bytes; at most 500 are allowed");
  s = Pause(*server, "report", "line\nbreak", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(TypeInfo(*server, "report").has_pause()) << "nothing was paused";
  const Job job = Submit(*server, "report");
  EXPECT_EQ(Lease(*server, 2), std::vector<std::string>{job.id()});
}

TEST_P(PauseTest, OnPostgresAPauseAskedOfOneServerHoldsOnAnotherAtOnce) {
  if (!postgres()) GTEST_SKIP() << "one server per RocksDB data dir";
  auto a = Start("a");
  testing::TempDir other;
  std::vector<std::string> flags = StoreFlags();
  flags.push_back("--config=" + dir_.sub("config.json"));
  flags.push_back("--server_id=b");
  ServerProcess b(other.sub("data"), flags);
  v1::JobTypeInfo info;
  ASSERT_TRUE(Pause(*a, "report", "deploying", &info).ok());
  EXPECT_EQ(TypeInfo(b, "report").pause().reason(), "deploying") << "b shows it";
  const Job job = Submit(b, "report");
  EXPECT_TRUE(Lease(b, 1.0).empty()) << "b hands out nothing of it";
  ASSERT_TRUE(Resume(b, "report", &info).ok());
  EXPECT_EQ(Lease(*a, 5), std::vector<std::string>{job.id()}) << "a lets it go";
}

}  // namespace
}  // namespace jobstream
