// WorkerService on the real binary: leases, fencing, retries, cancel, long-poll, batches,
// bad input, and a server restart under a lease.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::JobClient;
using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

google::protobuf::Duration Seconds(double s) {
  google::protobuf::Duration d;
  d.set_seconds(static_cast<int64_t>(s));
  d.set_nanos(static_cast<int32_t>((s - d.seconds()) * 1e9));
  return d;
}

// Runs on each store (store_test.h).
class WorkerTest : public testing::StoreTest {
 protected:
  // A server whose config declares `types_json` (the "types" array's items).
  void StartServer(const std::string& types_json, std::vector<std::string> flags = {}) {
    const std::string config = dir_.sub("config.json");
    FILE* f = fopen(config.c_str(), "w");
    fputs(absl::StrCat(R"({"types": [)", types_json, "]}").c_str(), f);
    fclose(f);
    flags.push_back("--config=" + config);
    flags.push_back("--retry_backoff=0s");
    for (std::string& f : StoreFlags()) flags.push_back(std::move(f));
    flags_ = flags;
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    Connect();
  }
  void Connect() {
    client_ = std::make_unique<JobClient>(server_->Channel());
    workers_ = v1::WorkerService::NewStub(server_->Channel());
  }
  void Restart(int signal) {
    const std::string address = server_->address();
    server_->Stop(signal);
    std::vector<std::string> flags = flags_;
    flags.push_back("--listen=" + address);
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    Connect();
  }

  Job Submit(const std::string& type, const std::string& params = "{}", int max_attempts = 0) {
    v1::SubmitRequest request;
    request.set_type(type);
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(params, request.mutable_params()).ok());
    request.set_max_attempts(max_attempts);
    auto job = client_->Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }

  grpc::Status Lease(const std::vector<std::string>& types, v1::LeaseJobResponse* response,
                     double wait = 0, int max_jobs = 0, const std::string& worker = "w1") {
    v1::LeaseJobRequest request;
    for (const auto& t : types) request.add_types(t);
    request.set_worker_id(worker);
    if (wait > 0) *request.mutable_wait() = Seconds(wait);
    request.set_max_jobs(max_jobs);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return workers_->LeaseJob(&ctx, request, response);
  }
  v1::LeasedJob LeaseOne(const std::string& type, double wait = 5) {
    v1::LeaseJobResponse response;
    grpc::Status s = Lease({type}, &response, wait);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.jobs_size(), 1);
    return response.jobs_size() > 0 ? response.jobs(0) : v1::LeasedJob();
  }
  grpc::Status Report(const std::string& lease, const v1::Progress* progress,
                      v1::ReportProgressResponse* response = nullptr) {
    v1::ReportProgressRequest request;
    request.set_lease_id(lease);
    if (progress) *request.mutable_progress() = *progress;
    v1::ReportProgressResponse ignored;
    grpc::ClientContext ctx;
    return workers_->ReportProgress(&ctx, request, response ? response : &ignored);
  }
  grpc::Status Complete(const std::string& lease, const std::string& result_json = "{\"ok\": true}") {
    v1::CompleteJobRequest request;
    request.set_lease_id(lease);
    EXPECT_TRUE(
        google::protobuf::util::JsonStringToMessage(result_json, request.mutable_result()).ok());
    Job job;
    grpc::ClientContext ctx;
    return workers_->CompleteJob(&ctx, request, &job);
  }
  grpc::Status Fail(const std::string& lease, int code, const std::string& message,
                    bool retryable) {
    v1::FailJobRequest request;
    request.set_lease_id(lease);
    request.mutable_error()->set_code(code);
    request.mutable_error()->set_message(message);
    request.set_retryable(retryable);
    Job job;
    grpc::ClientContext ctx;
    return workers_->FailJob(&ctx, request, &job);
  }
  std::vector<std::string> EventTypes(const std::string& id) {
    std::vector<std::string> types;
    auto end = client_->Watch(id, 0, [&](const JobEvent& e) {
      types.push_back(JobEvent::Type_Name(e.type()));
    });
    EXPECT_TRUE(end.ok()) << end.status();
    return types;
  }
  Job Status(const std::string& id) {
    auto job = client_->GetStatus(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  // Polls GetStatus until `pred` holds or 10 s pass.
  template <typename P>
  Job WaitFor(const std::string& id, P pred) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    Job job = Status(id);
    while (!pred(job) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      job = Status(id);
    }
    return job;
  }

  testing::TempDir dir_;
  std::vector<std::string> flags_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

JOBSTREAM_BOTH_STORES(WorkerTest);

constexpr char kReport[] = R"({"name": "report", "external": {"leaseDuration": "2s"}})";

TEST_P(WorkerTest, LeaseReportAndCompleteStreamLikeAnyJob) {
  StartServer(kReport);
  Job job = Submit("report", R"({"customer": 42})");
  v1::LeasedJob leased = LeaseOne("report");
  EXPECT_EQ(leased.job().id(), job.id());
  EXPECT_EQ(leased.job().state(), Job::RUNNING);
  EXPECT_EQ(leased.job().attempt(), 1);
  EXPECT_EQ(leased.job().worker_id(), "w1");
  EXPECT_EQ(leased.job().params().fields().at("customer").number_value(), 42);
  EXPECT_FALSE(leased.lease_id().empty());

  v1::Progress step;
  step.set_step("query");
  step.set_step_count(2);
  v1::ReportProgressResponse reply;
  ASSERT_TRUE(Report(leased.lease_id(), &step, &reply).ok());
  EXPECT_FALSE(reply.cancel_requested());
  EXPECT_GT(reply.lease_expire_time().seconds(), 0);
  v1::Progress half;
  half.set_fraction(0.5);
  half.set_message("rows 500/1000");
  ASSERT_TRUE(Report(leased.lease_id(), &half).ok());
  ASSERT_TRUE(Report(leased.lease_id(), nullptr).ok()) << "a heartbeat";
  Job running = Status(job.id());
  EXPECT_EQ(running.progress().step(), "query");
  EXPECT_EQ(running.progress().step_index(), 1);
  EXPECT_EQ(running.progress().step_count(), 2);
  EXPECT_DOUBLE_EQ(running.progress().fraction(), 0.5);
  EXPECT_EQ(running.progress().message(), "rows 500/1000");

  ASSERT_TRUE(Complete(leased.lease_id(), R"({"rows": 1000})").ok());
  EXPECT_EQ(EventTypes(job.id()),
            (std::vector<std::string>{"CREATED", "STARTED", "STEP", "PROGRESS", "SUCCEEDED"}));
  Job done = Status(job.id());
  EXPECT_EQ(done.result().struct_value().fields().at("rows").number_value(), 1000);
  grpc::Status again = Complete(leased.lease_id());
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << "finished: fenced";
}

TEST_P(WorkerTest, AnExpiredLeaseRetriesAndItsHolderIsFencedOff) {
  StartServer(R"({"name": "report", "external": {"leaseDuration": "1s"}, "maxAttempts": 2})");
  Job job = Submit("report");
  v1::LeasedJob first = LeaseOne("report");
  // The first worker goes quiet; its lease expires and the job is leased again.
  v1::LeasedJob second = LeaseOne("report", 5);
  ASSERT_EQ(second.job().id(), job.id());
  EXPECT_EQ(second.job().attempt(), 2);
  EXPECT_NE(second.lease_id(), first.lease_id());
  EXPECT_EQ(Complete(first.lease_id()).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Report(first.lease_id(), nullptr).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Fail(first.lease_id(), 2, "late", false).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  Job still = Status(job.id());
  EXPECT_EQ(still.state(), Job::RUNNING) << "the stale calls changed nothing";
  EXPECT_EQ(still.attempt(), 2);
  // The second lease expires too, with no attempt left: FAILED, saying why.
  Job failed = WaitFor(job.id(), [](const Job& j) { return j.state() == Job::FAILED; });
  EXPECT_EQ(failed.state(), Job::FAILED);
  EXPECT_NE(failed.error().message().find("lease expired"), std::string::npos)
      << failed.error().message();
  EXPECT_EQ(EventTypes(job.id()),
            (std::vector<std::string>{"CREATED", "STARTED", "RETRYING", "STARTED", "FAILED"}));
}

TEST_P(WorkerTest, FailJobRetriesOnlyWhatIsRetryable) {
  StartServer(kReport);
  Job retried = Submit("report", "{}", 3);
  v1::LeasedJob a = LeaseOne("report");
  ASSERT_TRUE(Fail(a.lease_id(), 14, "database busy", true).ok());
  Job queued = Status(retried.id());
  EXPECT_EQ(queued.state(), Job::QUEUED);
  EXPECT_EQ(queued.error().message(), "database busy");
  EXPECT_TRUE(queued.has_next_attempt_time());
  v1::LeasedJob b = LeaseOne("report");
  EXPECT_EQ(b.job().attempt(), 2);
  ASSERT_TRUE(Fail(b.lease_id(), 3, "bad customer id", false).ok());
  Job failed = Status(retried.id());
  EXPECT_EQ(failed.state(), Job::FAILED);
  EXPECT_EQ(failed.error().code(), 3);
  EXPECT_EQ(failed.attempt(), 2) << "not retried although attempts remain";
}

TEST_P(WorkerTest, CancelReachesQueuedAndRunningJobs) {
  StartServer(kReport);
  Job queued = Submit("report");
  auto cancelled = client_->Cancel(queued.id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), Job::CANCELLED);

  Job running = Submit("report");
  v1::LeasedJob leased = LeaseOne("report");
  ASSERT_TRUE(client_->Cancel(running.id()).ok());
  v1::ReportProgressResponse reply;
  ASSERT_TRUE(Report(leased.lease_id(), nullptr, &reply).ok());
  EXPECT_TRUE(reply.cancel_requested()) << "the worker learns of it in its next report";
  ASSERT_TRUE(Fail(leased.lease_id(), 1, "stopped", true).ok());
  Job ended = Status(running.id());
  EXPECT_EQ(ended.state(), Job::CANCELLED) << "never retried";

  // A worker that never answers: CANCELLED when its lease expires.
  Job silent = Submit("report");
  LeaseOne("report");
  ASSERT_TRUE(client_->Cancel(silent.id()).ok());
  Job gone = WaitFor(silent.id(), [](const Job& j) { return j.state() != Job::RUNNING; });
  EXPECT_EQ(gone.state(), Job::CANCELLED);
}

TEST_P(WorkerTest, LongPollReturnsWhenAJobArrivesOrTheWaitEnds) {
  StartServer(kReport);
  v1::LeaseJobResponse empty;
  absl::Time start = absl::Now();
  ASSERT_TRUE(Lease({"report"}, &empty, 0.3).ok());
  EXPECT_EQ(empty.jobs_size(), 0);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));

  v1::LeaseJobResponse got;
  grpc::Status status;
  start = absl::Now();
  std::thread waiter([&] { status = Lease({"report"}, &got, 20); });
  absl::SleepFor(absl::Milliseconds(300));
  Job job = Submit("report");
  waiter.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(got.jobs_size(), 1);
  EXPECT_EQ(got.jobs(0).job().id(), job.id());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "answered when the job came, not at 20 s";
}

TEST_P(WorkerTest, MaxJobsLeasesABatchEachWithItsOwnLease) {
  StartServer(kReport);
  for (int i = 0; i < 5; ++i) Submit("report", absl::StrCat(R"({"n": )", i, "}"));
  v1::LeaseJobResponse first, second, third;
  ASSERT_TRUE(Lease({"report"}, &first, 0, 3).ok());
  ASSERT_TRUE(Lease({"report"}, &second, 0, 3).ok());
  ASSERT_TRUE(Lease({"report"}, &third, 0, 3).ok());
  EXPECT_EQ(first.jobs_size(), 3);
  EXPECT_EQ(second.jobs_size(), 2);
  EXPECT_EQ(third.jobs_size(), 0);
  std::set<std::string> leases, ids;
  for (const auto* r : {&first, &second}) {
    for (const auto& j : r->jobs()) {
      leases.insert(j.lease_id());
      ids.insert(j.job().id());
      EXPECT_EQ(j.job().params().fields().count("n"), 1u) << "params come with each job";
    }
  }
  EXPECT_EQ(leases.size(), 5u);
  EXPECT_EQ(ids.size(), 5u);
  for (const auto* r : {&first, &second}) {
    for (const auto& j : r->jobs()) EXPECT_TRUE(Complete(j.lease_id()).ok());
  }
}

// EndJobs ends each lease as its single call would, answers each in order, and a refused
// ending (a lost lease, a bad result) changes nothing for the rest; a malformed call
// changes nothing at all.
TEST_P(WorkerTest, EndJobsEndsEachLeaseAsItsOwnCallWouldAndAnswersEach) {
  StartServer(R"({"name": "report", "external": {"leaseDuration": "30s"}, "maxAttempts": 3})",
              {"--max_params_bytes=1024"});
  std::vector<Job> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(Submit("report", absl::StrCat(R"({"n": )", i, "}")));
  v1::LeaseJobResponse leased;
  ASSERT_TRUE(Lease({"report"}, &leased, 0, 6).ok());
  ASSERT_EQ(leased.jobs_size(), 6);
  std::map<std::string, std::string> lease_of;  // job id -> lease id
  for (const auto& j : leased.jobs()) lease_of[j.job().id()] = j.lease_id();
  ASSERT_TRUE(Complete(lease_of[jobs[5].id()]).ok());  // its lease is gone before EndJobs

  auto call = [&](const v1::EndJobsRequest& request, v1::EndJobsResponse* response) {
    grpc::ClientContext ctx;
    return workers_->EndJobs(&ctx, request, response);
  };
  // Malformed calls first: refused whole, nothing ended.
  v1::EndJobsRequest none;
  v1::EndJobsResponse refused;
  grpc::Status s = call(none, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("endings: 0 given; send 1..1000"), std::string::npos) << s.error_message();
  v1::EndJobsRequest unset;
  unset.add_endings()->mutable_complete()->set_lease_id(lease_of[jobs[0].id()]);
  unset.add_endings();  // no kind
  s = call(unset, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("endings[1]: set one of"), std::string::npos)
      << s.error_message();
  v1::EndJobsRequest too_many;
  for (int i = 0; i < 1001; ++i) too_many.add_endings()->mutable_release()->set_lease_id("x");
  s = call(too_many, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("endings: 1001 given"), std::string::npos) << s.error_message();
  EXPECT_EQ(Status(jobs[0].id()).state(), Job::RUNNING) << "a refused call ended nothing";

  v1::EndJobsRequest request;
  auto* done = request.add_endings()->mutable_complete();
  done->set_lease_id(lease_of[jobs[0].id()]);
  done->mutable_result()->set_number_value(7);
  auto* retried = request.add_endings()->mutable_fail();
  retried->set_lease_id(lease_of[jobs[1].id()]);
  retried->mutable_error()->set_code(14);
  retried->mutable_error()->set_message("database busy");
  retried->set_retryable(true);
  auto* failed = request.add_endings()->mutable_fail();
  failed->set_lease_id(lease_of[jobs[2].id()]);
  failed->mutable_error()->set_code(3);
  failed->mutable_error()->set_message("bad customer id");
  request.add_endings()->mutable_release()->set_lease_id(lease_of[jobs[3].id()]);
  auto* too_big = request.add_endings()->mutable_complete();  // over --max_params_bytes
  too_big->set_lease_id(lease_of[jobs[4].id()]);
  too_big->mutable_result()->set_string_value(std::string(2000, 'x'));
  request.add_endings()->mutable_complete()->set_lease_id(lease_of[jobs[5].id()]);
  v1::EndJobsResponse response;
  s = call(request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.results_size(), 6);
  const Job::State expected[] = {Job::SUCCEEDED, Job::QUEUED, Job::FAILED, Job::QUEUED};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(response.results(i).job_id(), jobs[i].id()) << i;
    EXPECT_EQ(response.results(i).state(), expected[i]) << i;
    EXPECT_EQ(response.results(i).error().code(), 0) << response.results(i).error().message();
    EXPECT_EQ(Status(jobs[i].id()).state(), expected[i]) << i;
  }
  EXPECT_EQ(Status(jobs[0].id()).result().number_value(), 7);
  EXPECT_EQ(Status(jobs[1].id()).error().message(), "database busy");
  EXPECT_EQ(Status(jobs[2].id()).error().code(), 3);
  EXPECT_EQ(Status(jobs[3].id()).attempt(), 0) << "a released attempt is not counted";
  EXPECT_EQ(response.results(4).error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(response.results(4).error().message().find("result"), std::string::npos)
      << response.results(4).error().message();
  EXPECT_TRUE(response.results(4).job_id().empty());
  EXPECT_EQ(Status(jobs[4].id()).state(), Job::RUNNING) << "its refused ending changed nothing";
  EXPECT_EQ(response.results(5).error().code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "its lease had ended";
  EXPECT_EQ(EventTypes(jobs[0].id()),
            (std::vector<std::string>{"CREATED", "STARTED", "SUCCEEDED"}));
  EXPECT_TRUE(Complete(lease_of[jobs[4].id()]).ok()) << "its lease still holds";
}

// A LeaseJob carrying endings ends them first, as EndJobs would (the slot one frees is
// free for this very lease), answers each in `ended`, and is refused whole, ending nothing,
// when any part of it is invalid.
TEST_P(WorkerTest, ALeaseEndsTheJobsItCarriesFirstAndAnswersEach) {
  StartServer(R"({"name": "report", "external": {}, "concurrency": 1})");
  const Job a = Submit("report");
  const Job b = Submit("report");
  v1::LeasedJob first = LeaseOne("report");
  ASSERT_EQ(first.job().id(), a.id());

  // Refused whole: a type no worker may lease, or an ending of no kind. A is still running.
  for (int bad = 0; bad < 2; ++bad) {
    v1::LeaseJobRequest request;
    request.add_types(bad == 0 ? "demo.steps" : "report");
    request.add_endings()->mutable_complete()->set_lease_id(first.lease_id());
    if (bad == 1) request.add_endings();
    v1::LeaseJobResponse response;
    grpc::ClientContext ctx;
    grpc::Status s = workers_->LeaseJob(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find(bad == 0 ? "runs in the server" : "endings[1]"),
              std::string::npos)
        << s.error_message();
    EXPECT_EQ(Status(a.id()).state(), Job::RUNNING) << "nothing ended";
  }

  // A's ending frees the type's one slot, so B is leased at once (no wait given); an
  // ending whose lease id is malformed is refused on its own.
  v1::LeaseJobRequest request;
  request.add_types("report");
  request.set_worker_id("w1");
  auto* done = request.add_endings()->mutable_complete();
  done->set_lease_id(first.lease_id());
  done->mutable_result()->set_number_value(1);
  request.add_endings()->mutable_release()->set_lease_id(a.id() + ".9.x");
  v1::LeaseJobResponse response;
  grpc::ClientContext ctx;
  grpc::Status s = workers_->LeaseJob(&ctx, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.ended_size(), 2);
  EXPECT_EQ(response.ended(0).job_id(), a.id());
  EXPECT_EQ(response.ended(0).state(), Job::SUCCEEDED);
  EXPECT_EQ(response.ended(1).error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(response.ended(1).error().message().find("is not a lease id"), std::string::npos)
      << response.ended(1).error().message();
  ASSERT_EQ(response.jobs_size(), 1) << "the slot A freed";
  EXPECT_EQ(response.jobs(0).job().id(), b.id());
  EXPECT_EQ(Status(a.id()).result().number_value(), 1);
  EXPECT_EQ(EventTypes(a.id()), (std::vector<std::string>{"CREATED", "STARTED", "SUCCEEDED"}));
  EXPECT_TRUE(Complete(response.jobs(0).lease_id()).ok());
}

// Calls waiting together are answered together (on PostgreSQL by one claim): each gets
// up to its max_jobs of its own types, every attempt under its own caller's worker_id.
TEST_P(WorkerTest, WaitingCallsEachGetTheirShareUnderTheirOwnName) {
  StartServer(absl::StrCat(kReport, R"(, {"name": "render", "external": {}},
                                        {"name": "audit", "external": {}})"));
  // Ready all at once, in three to four seconds, while every call below waits (a call that
  // came after some were ready could be answered with fewer than its max_jobs).
  const int64_t ready_at = absl::ToUnixSeconds(absl::Now() + absl::Seconds(4));
  for (int i = 0; i < 12; ++i) {
    v1::SubmitRequest request;
    request.set_type(i < 10 ? "report" : "render");
    request.mutable_run_at()->set_seconds(ready_at);
    ASSERT_TRUE(client_->Submit(request).ok());
  }
  struct Call {
    std::vector<std::string> types;
    int max_jobs;
    std::string worker;
    v1::LeaseJobResponse response = {};
    grpc::Status status = {};
  };
  std::vector<Call> calls = {{{"report"}, 1, "w0"},
                             {{"report"}, 2, "w1"},
                             {{"report", "audit"}, 3, "w2"},
                             {{"audit", "report"}, 4, "w3"},
                             {{"render"}, 2, "r4"}};
  std::vector<std::thread> threads;
  for (Call& c : calls) {
    threads.emplace_back([&] { c.status = Lease(c.types, &c.response, 10, c.max_jobs, c.worker); });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> ids;
  for (const Call& c : calls) {
    ASSERT_TRUE(c.status.ok()) << c.worker << ": " << c.status.error_message();
    // Ten reports for calls that take ten, two renders for the call that takes two.
    EXPECT_EQ(c.response.jobs_size(), c.max_jobs) << c.worker;
    for (const v1::LeasedJob& leased : c.response.jobs()) {
      ids.insert(leased.job().id());
      EXPECT_EQ(leased.job().worker_id(), c.worker);
      EXPECT_EQ(Status(leased.job().id()).worker_id(), c.worker) << "as stored";
      EXPECT_NE(std::find(c.types.begin(), c.types.end(), leased.job().type()), c.types.end());
      EXPECT_TRUE(Complete(leased.lease_id()).ok());
    }
  }
  EXPECT_EQ(ids.size(), 12u) << "no job leased twice";
}

TEST_P(WorkerTest, PriorityAndRunAtOrderTheQueue) {
  StartServer(kReport);
  v1::SubmitRequest low, high, later;
  for (auto* r : {&low, &high, &later}) r->set_type("report");
  high.set_priority(10);
  later.set_priority(100);
  later.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Seconds(2)));
  auto l = client_->Submit(low);
  auto h = client_->Submit(high);
  auto t = client_->Submit(later);
  ASSERT_TRUE(l.ok() && h.ok() && t.ok());
  EXPECT_EQ(LeaseOne("report", 0).job().id(), h->id()) << "higher priority first";
  EXPECT_EQ(LeaseOne("report", 0).job().id(), l->id()) << "run_at not reached yet";
  EXPECT_EQ(LeaseOne("report", 5).job().id(), t->id()) << "then, on time, the scheduled one";
}

TEST_P(WorkerTest, BadInputIsRefusedPrecisely) {
  StartServer(kReport);
  Submit("report");
  v1::LeaseJobResponse r;
  struct Case {
    std::function<void(v1::LeaseJobRequest&)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& q) { q.clear_types(); }, "types is required"},
      {[](auto& q) { q.set_types(0, "demo.steps"); }, "runs in the server, not on workers"},
      {[](auto& q) { q.set_types(0, "nope"); }, "\"nope\" is not declared; EXTERNAL types: report"},
      {[](auto& q) { *q.mutable_wait() = Seconds(-1); }, "wait is -1s"},
      {[](auto& q) { *q.mutable_wait() = Seconds(100000); }, "wait is 27h46m40s; it must be 0 to 5m"},
      {[](auto& q) { *q.mutable_lease_duration() = Seconds(0.5); }, "lease_duration is 500ms"},
      {[](auto& q) { *q.mutable_lease_duration() = Seconds(86400); }, "lease_duration is 24h"},
      {[](auto& q) { q.set_max_jobs(10000); }, "max_jobs 10000 is outside 0..1000"},
      {[](auto& q) { q.set_max_jobs(-1); }, "max_jobs -1 is outside"},
      {[](auto& q) { q.set_worker_id(std::string(200, 'w')); }, "worker_id has 200 bytes"},
  };
  for (const Case& c : cases) {
    v1::LeaseJobRequest request;
    request.add_types("report");
    c.edit(request);
    grpc::ClientContext ctx;
    grpc::Status s = workers_->LeaseJob(&ctx, request, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(Status(client_->List({})->jobs(0).id()).state(), Job::QUEUED)
      << "no refused call leased anything";
  // max_jobs 0 means 1.
  ASSERT_TRUE(Lease({"report"}, &r, 0, 0).ok());
  ASSERT_EQ(r.jobs_size(), 1);
  const std::string lease = r.jobs(0).lease_id();

  EXPECT_EQ(Complete("garbage").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Complete(r.jobs(0).job().id() + "-0000000000000000").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Fail(lease, 99, "x", false).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::Progress bad;
  bad.set_fraction(1.5);
  EXPECT_EQ(Report(lease, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad.set_fraction(0.5);
  bad.set_step(std::string(300, 's'));
  EXPECT_EQ(Report(lease, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Status(r.jobs(0).job().id()).state(), Job::RUNNING) << "refused calls change nothing";
  EXPECT_TRUE(Complete(lease).ok());
}

TEST_P(WorkerTest, ALeaseKeepsItsDeadlineAcrossAServerCrash) {
  // A lease long enough to outlast two restarts on a loaded machine (a sanitizer build
  // restarts in seconds), and a short one to see expire.
  StartServer(R"({"name": "report", "external": {"leaseDuration": "60s"}, "maxAttempts": 1},
                 {"name": "short", "external": {"leaseDuration": "3s"}, "maxAttempts": 1})");
  Job job = Submit("report");
  v1::LeasedJob leased = LeaseOne("report");
  Restart(SIGKILL);
  v1::ReportProgressResponse reply;
  ASSERT_TRUE(Report(leased.lease_id(), nullptr, &reply).ok()) << "the lease survived";
  EXPECT_EQ(Status(job.id()).state(), Job::RUNNING);
  Restart(SIGTERM);
  ASSERT_TRUE(Complete(leased.lease_id()).ok()) << "and a clean restart too";
  EXPECT_EQ(Status(job.id()).state(), Job::SUCCEEDED);

  // Left alone, a lease expires on time after a restart as well.
  Job orphan = Submit("short");
  LeaseOne("short");
  Restart(SIGKILL);
  Job failed = WaitFor(orphan.id(), [](const Job& j) { return j.state() == Job::FAILED; });
  EXPECT_EQ(failed.state(), Job::FAILED);
}

TEST_P(WorkerTest, ListJobTypesCountsQueuedRunningAndPollingWorkers) {
  StartServer(R"({"name": "report", "external": {}, "description": "Monthly reports",
                  "concurrency": 4, "maxAttempts": 7, "timeout": "60s"})");
  Submit("report");
  Submit("report");
  LeaseOne("report");
  std::thread poller([&] {
    v1::LeaseJobResponse r;
    Lease({"report"}, &r, 1.0, 0, "w2");
  });
  absl::SleepFor(absl::Milliseconds(300));
  v1::ListJobTypesResponse types;
  grpc::ClientContext ctx;
  ASSERT_TRUE(v1::JobService::NewStub(server_->Channel())
                  ->ListJobTypes(&ctx, v1::ListJobTypesRequest(), &types)
                  .ok());
  poller.join();
  ASSERT_EQ(types.types_size(), 2);
  const v1::JobTypeInfo& demo = types.types(0);
  EXPECT_EQ(demo.name(), "demo.steps");
  EXPECT_EQ(demo.runner(), v1::JobTypeInfo::BUILTIN);
  const v1::JobTypeInfo& report = types.types(1);
  EXPECT_EQ(report.name(), "report");
  EXPECT_EQ(report.runner(), v1::JobTypeInfo::EXTERNAL);
  EXPECT_EQ(report.description(), "Monthly reports");
  EXPECT_EQ(report.concurrency(), 4);
  EXPECT_EQ(report.max_attempts(), 7);
  EXPECT_EQ(report.timeout().seconds(), 60);
  EXPECT_EQ(report.lease_duration().seconds(), 30);
  // One job was leased by w1; w2's poll took the other before it was counted, or waits.
  EXPECT_EQ(report.queued() + report.running(), 2);
  EXPECT_EQ(report.workers(), 2);
}

TEST_P(WorkerTest, ConcurrencyLimitsHowManyRunAtOnce) {
  StartServer(R"({"name": "report", "external": {}, "concurrency": 2})");
  for (int i = 0; i < 4; ++i) Submit("report");
  v1::LeaseJobResponse r;
  ASSERT_TRUE(Lease({"report"}, &r, 0, 10).ok());
  ASSERT_EQ(r.jobs_size(), 2);
  v1::LeaseJobResponse none;
  ASSERT_TRUE(Lease({"report"}, &none, 0.2, 10).ok());
  EXPECT_EQ(none.jobs_size(), 0);
  ASSERT_TRUE(Complete(r.jobs(0).lease_id()).ok());
  v1::LeaseJobResponse one;
  ASSERT_TRUE(Lease({"report"}, &one, 0, 10).ok());
  EXPECT_EQ(one.jobs_size(), 1) << "a slot came free";
}

TEST_P(WorkerTest, HealthIsServedWithADescriptorAndNotServingWhileStopping) {
  StartServer(kReport);
  auto health = grpc::health::v1::Health::NewStub(server_->Channel());
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  request.set_service("jobstream.v1.WorkerService");
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  request.set_service("no.such.Service");
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(health->Check(&ctx, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // Watch sees SERVING, then NOT_SERVING once shutdown begins.
  request.set_service("");
  grpc::ClientContext watch_ctx;
  auto reader = health->Watch(&watch_ctx, request);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  std::thread stopper([&] { server_->Stop(SIGTERM); });
  const bool told = reader->Read(&response);
  stopper.join();
  ASSERT_TRUE(told) << "the stream ended before NOT_SERVING";
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

}  // namespace
}  // namespace jobstream
