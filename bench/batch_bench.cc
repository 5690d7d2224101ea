// jobstream-batch-bench: fan-out / fan-in through external workers, on a real RocksDB
// server on loopback. The same N jobs (default 10,000) run by 8 workers leasing 16 at a
// time, two ways, each on a fresh server and repeated --runs times:
//   - independent: 64 callers Submit them; done when the last CompleteJob is answered;
//   - batch: one SubmitBatch of N children with a `then` job of the same type; done when
//     WaitJob on the parent answers (the then job run, the parent ended).
// Prints a Markdown table and the ratio batch / independent (issue 19's target: <= 1.1).
// Then, in the same run, Celery + Redis doing the same (bench/baseline/celery_chord.py):
// the N tasks independent and as a chord with a callback, each run on one worker of 8
// processes. A baseline that cannot run says so and fails the bench.
//
//   build/bench/jobstream-batch-bench [--jobs=10000] [--runs=3] [--celery=true]
//       [--server_bin=PATH]
#include <atomic>
#include <filesystem>
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
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(int, jobs, 10000, "jobs per run (a batch's children)");
ABSL_FLAG(int, runs, 3, "runs of each way");
ABSL_FLAG(bool, celery, true, "also run the Celery chord baseline (python3-celery, redis-server)");
ABSL_FLAG(std::string, server_bin, "", "jobstream-server (default: ../server/ beside this binary)");

namespace {

using jobstream::bench::Channels;
using jobstream::bench::Child;
using jobstream::bench::Spawn;
using jobstream::v1::Job;
using jobstream::v1::JobService;
using jobstream::v1::WorkerService;

constexpr char kType[] = "bench.work";
constexpr int kWorkers = 8;
constexpr int kPerLease = 16;

jobstream::v1::SubmitRequest Work(int n) {
  jobstream::v1::SubmitRequest request;
  request.set_type(kType);
  (*request.mutable_params()->mutable_fields())["n"].set_number_value(n);
  return request;
}

struct Run {
  double seconds = 0;
  double submit_seconds = 0;  // until every job (or the batch) was acknowledged
  int64_t errors = 0;
};

// One way, on a fresh server: `batch` or independent jobs.
Run RunOnce(const std::string& bin, int jobs, bool batch) {
  jobstream::testing::TempDir dir;
  const std::string config = dir.sub("config.json");
  std::ofstream(config) << R"({"types": [{"name": ")" << kType
                        << R"(", "external": {"leaseDuration": "60s"}}]})";
  Child server = Spawn({bin, "--listen=127.0.0.1:0", "--log=false", "--data_dir=" + dir.sub("data"),
                        "--config=" + config});
  auto channels = Channels(server.address, 8);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> completed{0}, errors{0};
  std::vector<std::unique_ptr<WorkerService::Stub>> worker_stubs;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    worker_stubs.push_back(WorkerService::NewStub(channels[4 + w % 4]));
    workers.emplace_back(jobstream::bench::WorkerLoop, worker_stubs.back().get(), kType,
                         kPerLease, &stop, &completed, &errors, "",
                         jobstream::bench::Ending::kCompleteJob);
  }
  absl::SleepFor(absl::Milliseconds(300));  // every worker is waiting
  Run run;
  const absl::Time begin = absl::Now();
  if (batch) {
    jobstream::v1::SubmitBatchRequest request;
    for (int i = 0; i < jobs; ++i) *request.add_children() = Work(i);
    *request.mutable_then() = Work(-1);
    auto stub = JobService::NewStub(channels[0]);
    jobstream::v1::SubmitBatchResponse response;
    grpc::ClientContext ctx;
    grpc::Status s = stub->SubmitBatch(&ctx, request, &response);
    run.submit_seconds = absl::ToDoubleSeconds(absl::Now() - begin);
    if (!s.ok()) {
      std::cerr << "SubmitBatch: " << s.error_message() << "\n";
      ++run.errors;
    } else {
      jobstream::v1::WaitJobRequest wait;
      wait.set_job_id(response.parent().id());
      wait.mutable_timeout()->set_seconds(300);
      Job parent;
      grpc::ClientContext wctx;
      s = stub->WaitJob(&wctx, wait, &parent);
      if (!s.ok() || parent.state() != Job::SUCCEEDED) {
        std::cerr << "the batch did not succeed: " << s.error_message() << " "
                  << Job::State_Name(parent.state()) << "\n";
        ++run.errors;
      }
    }
  } else {
    std::atomic<int> next{0};
    std::vector<std::thread> submitters;
    std::vector<std::unique_ptr<JobService::Stub>> stubs;
    for (int t = 0; t < 64; ++t) {
      stubs.push_back(JobService::NewStub(channels[t % 4]));
      submitters.emplace_back([&, stub = stubs.back().get()] {
        for (int i = next++; i < jobs; i = next++) {
          Job job;
          grpc::ClientContext ctx;
          if (!stub->Submit(&ctx, Work(i), &job).ok()) ++errors;
        }
      });
    }
    for (auto& t : submitters) t.join();
    run.submit_seconds = absl::ToDoubleSeconds(absl::Now() - begin);
    const absl::Time deadline = absl::Now() + absl::Seconds(300);
    while (completed.load() < jobs && absl::Now() < deadline) {
      absl::SleepFor(absl::Microseconds(200));
    }
    if (completed.load() < jobs) ++run.errors;
  }
  run.seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  stop = true;
  for (auto& t : workers) t.join();
  run.errors += errors.load();
  server.Stop();
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string bin =
      jobstream::bench::BinDir(argv[0], absl::GetFlag(FLAGS_server_bin)) + "/server/jobstream-server";
  const int jobs = absl::GetFlag(FLAGS_jobs);
  const int runs = absl::GetFlag(FLAGS_runs);
  std::cout << "Store: RocksDB; " << jobs << " jobs, " << kWorkers << " workers leasing "
            << kPerLease << " at a time\n\n"
            << "| run | independent: all submitted | all done | batch: submitted | parent ended "
               "(then job included) | batch / independent |\n"
            << "| --- | --- | --- | --- | --- | --- |\n";
  std::vector<double> ratios;
  bool failed = false;
  for (int r = 1; r <= runs; ++r) {
    const Run independent = RunOnce(bin, jobs, /*batch=*/false);
    const Run batch = RunOnce(bin, jobs, /*batch=*/true);
    failed = failed || independent.errors > 0 || batch.errors > 0;
    ratios.push_back(batch.seconds / independent.seconds);
    std::cout << absl::StrFormat("| %d | %.2f s | %.2f s | %.2f s | %.2f s | %.2f |\n", r,
                                 independent.submit_seconds, independent.seconds,
                                 batch.submit_seconds, batch.seconds, ratios.back())
              << std::flush;
  }
  std::sort(ratios.begin(), ratios.end());
  std::cout << absl::StrFormat("\nmedian batch / independent: %.2f (target <= 1.10)\n",
                               ratios[ratios.size() / 2]);
  if (absl::GetFlag(FLAGS_celery)) {
    auto [code, out] = jobstream::bench::RunBaseline(
        "celery_chord.py",
        absl::StrCat("--jobs=", jobs, " --runs=", runs, " --concurrency=8 --submitters=8"));
    std::cout << "\nCelery 5.2 + Redis 7 (Redis without fsync), 1 worker of 8 processes, the same "
              << jobs << " tasks:\n\n" << out;
    if (code != 0) {
      std::cerr << "the Celery baseline did not run (Debian's python3-celery, python3-redis and "
                   "redis-server): no figure for it\n";
      failed = true;
    }
  }
  if (failed) {
    std::cerr << "some calls failed: the figures above are not a measurement\n";
    return 1;
  }
  return 0;
}
