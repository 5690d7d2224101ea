// jobstream-fairness-bench: one tenant's backlog must not make another wait. On a real
// RocksDB server with tokens: tenant "big" queues a backlog (default 100,000 jobs, as ten
// batches), 8 workers (an admin token) lease 16 at a time and complete them, and while the
// backlog drains tenant "small" submits one job every 20 ms. Prints the small tenant's start
// latency (the job's start_time - create_time) p50 / p99 / max, and how much of the backlog
// was still queued when the last small job started (issue 19's target: p99 <= 50 ms).
// With --keys=N the backlog is spread over N concurrency keys (and --key_concurrency=K
// limits each): the same figures with a queue of many lanes, some held back.
//
//   build/bench/jobstream-fairness-bench [--backlog=100000] [--small=200]
//       [--keys=0 --key_concurrency=0] [--server_bin=PATH]
#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(int, backlog, 100000, "the big tenant's queued jobs (a multiple of 10,000 or less)");
ABSL_FLAG(int, small, 200, "the small tenant's jobs, one every 20 ms");
ABSL_FLAG(int, keys, 0, "spread the backlog over this many concurrency keys (0: none)");
ABSL_FLAG(int, key_concurrency, 0, "the type's keyConcurrency (0: none)");
ABSL_FLAG(std::string, server_bin, "", "jobstream-server (default: ../server/ beside this binary)");

namespace {

using jobstream::bench::Channels;
using jobstream::bench::Child;
using jobstream::bench::Percentile;
using jobstream::bench::Spawn;
using jobstream::v1::Job;
using jobstream::v1::JobService;
using jobstream::v1::WorkerService;

constexpr char kType[] = "bench.work";
constexpr char kBig[] = "big-0123456789abcdef";
constexpr char kSmall[] = "small-0123456789abcdef";
constexpr char kRoot[] = "root-0123456789abcdef";

std::string Entry(const std::string& secret, const std::string& tenant, const std::string& roles) {
  jobstream::v1::Sha256 digest;
  digest.Update(secret);
  return absl::StrCat(R"({"sha256": ")", digest.HexDigest(), R"(", "name": ")", tenant,
                      R"(", "tenant": ")", tenant, R"(", "roles": [)", roles, "]}");
}

void Authorize(grpc::ClientContext& ctx, const char* token) {
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

jobstream::v1::SubmitRequest Work(const std::string& key = "") {
  jobstream::v1::SubmitRequest request;
  request.set_type(kType);
  request.set_concurrency_key(key);
  return request;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string bin =
      jobstream::bench::BinDir(argv[0], absl::GetFlag(FLAGS_server_bin)) + "/server/jobstream-server";
  const int backlog = absl::GetFlag(FLAGS_backlog);
  const int small = absl::GetFlag(FLAGS_small);
  const int keys = absl::GetFlag(FLAGS_keys);
  const int key_concurrency = absl::GetFlag(FLAGS_key_concurrency);
  jobstream::testing::TempDir dir;
  std::ofstream(dir.sub("tokens.json"))
      << R"({"tokens": [)" << Entry(kBig, "big", R"("submit", "read")") << ","
      << Entry(kSmall, "small", R"("submit", "read")") << "," << Entry(kRoot, "ops", R"("admin")")
      << "]}";
  std::ofstream(dir.sub("config.json"))
      << R"({"types": [{"name": ")" << kType << R"(", "keyConcurrency": )" << key_concurrency
      << R"(, "external": {"leaseDuration": "60s"}}]})";
  Child server = Spawn({bin, "--listen=127.0.0.1:0", "--log=false", "--data_dir=" + dir.sub("data"),
                        "--config=" + dir.sub("config.json"),
                        "--auth_tokens=" + dir.sub("tokens.json")});
  auto channels = Channels(server.address, 8);
  auto jobs = JobService::NewStub(channels[0]);
  int64_t errors_before = 0;

  // The big tenant's backlog, 10,000 at a time.
  const absl::Time queued_from = absl::Now();
  for (int left = backlog; left > 0; left -= 10000) {
    jobstream::v1::SubmitBatchRequest request;
    for (int i = 0; i < std::min(left, 10000); ++i) {
      *request.add_children() = Work(keys > 0 ? absl::StrCat("key-", (left + i) % keys) : "");
    }
    jobstream::v1::SubmitBatchResponse response;
    grpc::ClientContext ctx;
    Authorize(ctx, kBig);
    grpc::Status s = jobs->SubmitBatch(&ctx, request, &response);
    if (!s.ok()) {
      std::cerr << "the backlog's SubmitBatch failed: " << s.error_message() << "\n";
      return 1;
    }
  }
  const double queue_seconds = absl::ToDoubleSeconds(absl::Now() - queued_from);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> completed{0}, errors{0};
  std::vector<std::unique_ptr<WorkerService::Stub>> worker_stubs;
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    worker_stubs.push_back(WorkerService::NewStub(channels[4 + w % 4]));
    workers.emplace_back(jobstream::bench::WorkerLoop, worker_stubs.back().get(), kType, 16,
                         &stop, &completed, &errors, absl::StrCat("Bearer ", kRoot),
                         jobstream::bench::Ending::kCompleteJob);
  }
  absl::SleepFor(absl::Seconds(1));  // draining at full speed

  // The small tenant: one job every 20 ms while the backlog drains.
  std::vector<std::string> ids;
  for (int i = 0; i < small; ++i) {
    Job job;
    grpc::ClientContext ctx;
    Authorize(ctx, kSmall);
    if (grpc::Status s = jobs->Submit(&ctx, Work(), &job); !s.ok()) {
      std::cerr << "small Submit: " << s.error_message() << "\n";
      ++errors_before;
    } else {
      ids.push_back(job.id());
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  // Each small job's start, once it has ended.
  std::vector<double> latency_ms;
  for (const std::string& id : ids) {
    jobstream::v1::WaitJobRequest request;
    request.set_job_id(id);
    request.mutable_timeout()->set_seconds(120);
    Job job;
    grpc::ClientContext ctx;
    Authorize(ctx, kSmall);
    if (!jobs->WaitJob(&ctx, request, &job).ok() || job.state() != Job::SUCCEEDED) {
      ++errors_before;
      continue;
    }
    latency_ms.push_back(absl::ToDoubleMilliseconds(
        jobstream::v1::ToTime(job.start_time()) - jobstream::v1::ToTime(job.create_time())));
  }
  const int64_t drained = completed.load();
  const double drain_seconds = absl::ToDoubleSeconds(absl::Now() - queued_from) - queue_seconds;
  stop = true;
  for (auto& t : workers) t.join();
  server.Stop();

  std::cout << "Store: RocksDB; tenant big queued " << backlog << " jobs (as batches of 10,000, "
            << absl::StrFormat("%.1f s", queue_seconds) << ")"
            << (keys > 0 ? absl::StrCat(" over ", keys, " concurrency keys") : "")
            << (key_concurrency > 0 ? absl::StrCat(", keyConcurrency ", key_concurrency) : "")
            << "; 8 workers leasing 16 at a time\n\n"
            << "| small tenant's jobs | start latency p50 | p99 | max | big's jobs still queued "
               "when the last small job ended |\n| --- | --- | --- | --- | --- |\n"
            << absl::StrFormat("| %zu | %.1f ms | %.1f ms | %.1f ms | %d of %d |\n",
                               latency_ms.size(), Percentile(latency_ms, 0.5),
                               Percentile(latency_ms, 0.99),
                               latency_ms.empty() ? 0.0
                                                  : *std::max_element(latency_ms.begin(),
                                                                      latency_ms.end()),
                               static_cast<int>(std::max<int64_t>(0, backlog - drained)), backlog)
            << absl::StrFormat("\n(%.0f jobs/s drained meanwhile)\n",
                               drained / std::max(drain_seconds, 1e-9));
  if (errors_before > 0 || errors.load() > 0 ||
      static_cast<int>(latency_ms.size()) != small) {
    std::cerr << "some calls failed (" << errors_before + errors.load()
              << "): the figures above are not a measurement\n";
    return 1;
  }
  return 0;
}
