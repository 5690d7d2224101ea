// /metrics on the real binary and each store: after a scripted workload (retries, a lease
// that expires, a failure, a cancel, jobs left queued and running) every counter says what
// happened, the gauges say what ListJobTypes says, the histograms counted each attempt, and
// `promtool check metrics` finds nothing wrong. Then what the port refuses, and why.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/http_get.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using testing::HttpGet;
using testing::HttpReply;
using testing::ServerProcess;
using v1::Job;

// Each sample of a scrape: "name{labels}" (as written) -> value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

class MetricsTest : public testing::StoreTest {
 protected:
  void StartServer(std::vector<std::string> flags = {}) {
    std::FILE* f = std::fopen(dir_.sub("config.json").c_str(), "w");
    std::fputs(R"({"types": [
      {"name": "report", "external": {"leaseDuration": "1s"}, "maxAttempts": 2},
      {"name": "held", "external": {"leaseDuration": "60s"}}]})",
               f);
    std::fclose(f);
    flags.push_back("--config=" + dir_.sub("config.json"));
    flags.push_back("--retry_backoff=0s");
    flags.push_back("--metrics_listen=127.0.0.1:0");  // the server picks: no port race
    for (std::string& s : StoreFlags()) flags.push_back(std::move(s));
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    metrics_port_ = server_->metrics_port();
    ASSERT_GT(metrics_port_, 0);
    client_ = std::make_unique<client::JobClient>(server_->Channel());
    workers_ = v1::WorkerService::NewStub(server_->Channel());
  }

  Job Submit(const std::string& type) {
    v1::SubmitRequest request;
    request.set_type(type);
    auto job = client_->Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  // A lease of the type's length (1 s for "report"), or of `seconds`.
  v1::LeasedJob Lease(const std::string& type, int seconds = 0) {
    v1::LeaseJobRequest request;
    request.add_types(type);
    request.set_worker_id("w1");
    request.mutable_wait()->set_seconds(10);
    if (seconds > 0) request.mutable_lease_duration()->set_seconds(seconds);
    grpc::ClientContext ctx;
    v1::LeaseJobResponse response;
    grpc::Status s = workers_->LeaseJob(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.jobs_size(), 1);
    return response.jobs_size() > 0 ? response.jobs(0) : v1::LeasedJob();
  }
  void Complete(const v1::LeasedJob& leased) {
    v1::CompleteJobRequest request;
    request.set_lease_id(leased.lease_id());
    Job job;
    grpc::ClientContext ctx;
    grpc::Status s = workers_->CompleteJob(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  void Fail(const v1::LeasedJob& leased, bool retryable) {
    v1::FailJobRequest request;
    request.set_lease_id(leased.lease_id());
    request.mutable_error()->set_code(retryable ? 14 : 3);
    request.mutable_error()->set_message(retryable ? "busy" : "bad input");
    request.set_retryable(retryable);
    Job job;
    grpc::ClientContext ctx;
    grpc::Status s = workers_->FailJob(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  std::string Scrape() {
    HttpReply reply = HttpGet(metrics_port_, "/metrics");
    EXPECT_EQ(reply.status, 200) << reply.body;
    EXPECT_EQ(reply.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    return reply.body;
  }

  testing::TempDir dir_;
  int metrics_port_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<client::JobClient> client_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};
JOBSTREAM_BOTH_STORES(MetricsTest);

TEST_P(MetricsTest, CountersGaugesAndHistogramsSayWhatTheWorkloadDid) {
  StartServer();
  // Before any job: every declared type's series is there, at 0.
  std::map<std::string, double> empty = Samples(Scrape());
  EXPECT_EQ(empty.at(R"(jobstream_jobs_submitted_total{type="report"})"), 0);
  EXPECT_EQ(empty.at(R"(jobstream_jobs_failed_total{type="held"})"), 0);

  // A: a retryable failure, then success. B: a failure for good.
  const Job a = Submit("report");
  Fail(Lease("report"), true);
  Complete(Lease("report"));
  const Job b = Submit("report");
  Fail(Lease("report"), false);
  // C: its worker goes quiet; the lease expires and the next attempt succeeds.
  const Job c = Submit("report");
  const v1::LeasedJob silent = Lease("report");
  const v1::LeasedJob again = Lease("report");  // waits for the expiry
  EXPECT_EQ(again.job().id(), c.id());
  Complete(again);
  // D: cancelled while queued. E, F: left queued (no worker takes "held"). G: left running.
  const Job d = Submit("report");
  ASSERT_TRUE(client_->Cancel(d.id()).ok());
  const absl::Time queued_at = absl::Now();
  Submit("held");
  Submit("held");
  const Job g = Submit("report");
  EXPECT_EQ(Lease("report", 600).job().id(), g.id());  // runs on while the test looks
  // H: a demo job that attaches an artifact of 100,000 bytes, read back once.
  v1::SubmitRequest with_file;
  with_file.set_type("demo.steps");
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"steps": ["a"], "step_ms": 0, "ticks": 0,
                      "artifact": {"name": "out.bin", "bytes": 100000}})",
                  with_file.mutable_params())
                  .ok());
  auto h = client_->Submit(with_file);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(client_->Watch(h->id(), 0, [](const v1::JobEvent&) {}).ok());
  int64_t read = 0;
  ASSERT_TRUE(client_
                  ->ReadArtifact(h->id(), "out.bin", 0, [](const v1::Artifact&) {},
                                 [&read](absl::string_view data) {
                                   read += static_cast<int64_t>(data.size());
                                   return absl::OkStatus();
                                 })
                  .ok());
  EXPECT_EQ(read, 100000);
  absl::SleepFor(absl::Milliseconds(300));  // the held jobs have waited at least this long

  v1::ListJobTypesResponse types;
  {
    grpc::ClientContext ctx;
    grpc::Status s = v1::JobService::NewStub(server_->Channel())
                         ->ListJobTypes(&ctx, v1::ListJobTypesRequest(), &types);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  // Every event stored, for PostgreSQL's feed: they reach its watchers through the feed a
  // moment after their commit.
  int64_t stored = 0;
  {
    v1::ListJobsRequest all;
    all.set_page_size(100);
    auto listed = client_->List(all);
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->jobs_size(), 8);
    for (const Job& job : listed->jobs()) stored += job.last_sequence();
  }
  std::string text = Scrape();
  std::map<std::string, double> m = Samples(text);
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       postgres() && m["jobstream_pg_feed_lag_seconds_count"] < stored && absl::Now() < deadline;
       m = Samples(text = Scrape())) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration since_queued = absl::Now() - queued_at;
  auto at = [&m](const std::string& series) {
    auto it = m.find(series);
    EXPECT_NE(it, m.end()) << series << " is missing";
    return it == m.end() ? -1 : it->second;
  };
  EXPECT_EQ(at(R"(jobstream_jobs_submitted_total{type="report"})"), 5);
  EXPECT_EQ(at(R"(jobstream_jobs_submitted_total{type="held"})"), 2);
  EXPECT_EQ(at(R"(jobstream_jobs_started_total{type="report"})"), 6);  // A 2, B 1, C 2, G 1
  EXPECT_EQ(at(R"(jobstream_jobs_succeeded_total{type="report"})"), 2);
  EXPECT_EQ(at(R"(jobstream_jobs_failed_total{type="report"})"), 1);
  EXPECT_EQ(at(R"(jobstream_jobs_retried_total{type="report"})"), 2);  // A's failure, C's expiry
  EXPECT_EQ(at(R"(jobstream_jobs_cancelled_total{type="report"})"), 1);
  EXPECT_EQ(at(R"(jobstream_leases_expired_total{type="report"})"), 1);
  EXPECT_EQ(at(R"(jobstream_job_queue_wait_seconds_count{type="report"})"), 6);
  EXPECT_EQ(at(R"(jobstream_job_run_seconds_count{type="report"})"), 5);  // G still runs
  // C's silent attempt ran a lease's length before it was ended.
  EXPECT_LE(at(R"(jobstream_job_run_seconds_bucket{type="report",le="0.5"})"), 4);
  EXPECT_GE(at(R"(jobstream_job_run_seconds_sum{type="report"})"), 1.0);
  for (const v1::JobTypeInfo& t : types.types()) {
    const std::string label = absl::StrCat(R"({type=")", t.name(), R"("})");
    EXPECT_EQ(at("jobstream_jobs_queued" + label), t.queued()) << t.name();
    EXPECT_EQ(at("jobstream_jobs_running" + label), t.running()) << t.name();
    if (t.runner() == v1::JobTypeInfo::EXTERNAL) {  // workers are only of external types
      EXPECT_EQ(at("jobstream_workers_seen" + label), t.workers()) << t.name();
      EXPECT_EQ(at("jobstream_workers_polling" + label), t.polling()) << t.name();
    } else {
      EXPECT_EQ(m.count("jobstream_workers_seen" + label), 0u) << t.name();
    }
  }
  EXPECT_EQ(at(R"(jobstream_jobs_queued{type="held"})"), 2);
  EXPECT_EQ(at(R"(jobstream_jobs_running{type="report"})"), 1);
  EXPECT_EQ(at(R"(jobstream_workers_seen{type="report"})"), 1);
  const double latency = at(R"(jobstream_queue_latency_seconds{type="held"})");
  EXPECT_GE(latency, 0.25);
  EXPECT_LE(latency, absl::ToDoubleSeconds(since_queued) + 1.5);
  EXPECT_EQ(at(R"(jobstream_queue_latency_seconds{type="report"})"), 0) << "none ready";
  // Each store's own.
  if (!postgres()) {
    EXPECT_GT(at("jobstream_store_commit_seconds_count"), 0);
    EXPECT_GT(at("jobstream_disk_free_bytes"), 0);
    EXPECT_EQ(at("jobstream_disk_floor_bytes"), 256 << 20) << "--min_free_disk_bytes' default";
    EXPECT_GE(at("jobstream_rocksdb_live_sst_bytes"), 0) << "served (0 before the first flush)";
    EXPECT_EQ(at("jobstream_rocksdb_write_stopped"), 0);
    EXPECT_EQ(at("jobstream_store_up"), 1);
  } else {
    EXPECT_GT(at("jobstream_pg_call_seconds_count"), 20);
    EXPECT_GT(at("jobstream_pg_pool_wait_seconds_count"), 20);
    EXPECT_EQ(at("jobstream_pg_feed_lag_seconds_count"), stored);
    EXPECT_EQ(at("jobstream_pg_feed_lost_total"), 0);
  }
  EXPECT_EQ(at("jobstream_artifact_bytes_written_total"), 100000);
  EXPECT_EQ(at("jobstream_artifact_bytes_read_total"), 100000);
  EXPECT_EQ(at(R"(jobstream_webhook_attempts_total{outcome="delivered"})"), 0);
  (void)silent;

  testing::TempDir scratch;
  const std::string file = scratch.sub("scrape.txt");
  std::FILE* f = std::fopen(file.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  auto [code, out] = testing::RunCommand("promtool check metrics < " + file + " 2>&1");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "") << "promtool has remarks";
}

TEST_P(MetricsTest, ThePortAnswersOnlyGetMetricsAndSaysWhy) {
  StartServer();
  EXPECT_EQ(HttpGet(metrics_port_, "/").status, 404);
  EXPECT_EQ(HttpGet(metrics_port_, "/metrics?format=json").status, 400);
  HttpReply post = HttpGet(metrics_port_, "/metrics", {}, boost::beast::http::verb::post);
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers["allow"], "GET, HEAD");
  HttpReply head = HttpGet(metrics_port_, "/metrics", {}, boost::beast::http::verb::head);
  EXPECT_EQ(head.status, 200);
  EXPECT_GT(std::stoll(head.headers["content-length"]), 1000);
  // Not HTTP at all: 400, and the server serves on.
  auto [code, out] = testing::RunCommand(absl::StrCat(
      "printf 'hello\\r\\n\\r\\n' | timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/", metrics_port_,
      "; cat >&3; cat <&3' 2>&1 | head -1"));
  EXPECT_NE(out.find("400"), std::string::npos) << out;
  EXPECT_EQ(HttpGet(metrics_port_, "/metrics").status, 200);

  // An address taken already: a given --metrics_listen must be served, so the server
  // does not start; it names the address.
  const std::string taken = absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_);
  auto [refused, said] = testing::RunCommand(
      testing::BinaryPath("server/jobstream-server") + " --listen=127.0.0.1:0 --data_dir=" +
      dir_.sub("other") + " " + taken + " 2>&1");
  EXPECT_EQ(refused, 2);
  EXPECT_NE(said.find(absl::StrCat("cannot serve metrics on 127.0.0.1:", metrics_port_)),
            std::string::npos)
      << said;
  auto [bad, why] = testing::RunCommand(testing::BinaryPath("server/jobstream-server") +
                                        " --data_dir=" + dir_.sub("other") +
                                        " --metrics_listen=9464 2>&1");
  EXPECT_EQ(bad, 2);
  EXPECT_NE(why.find("--metrics_listen must be HOST:PORT"), std::string::npos) << why;
}

}  // namespace
}  // namespace jobstream
