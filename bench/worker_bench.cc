// jobstream-worker-bench: jobs run by external workers, measured on a real server on
// loopback. Prints a Markdown report (bench/RESULTS.md):
//   - a deep queue: server memory with N queued jobs, and the time a restart after kill -9
//     takes to serve them again;
//   - end-to-end jobs/s (Submit -> LeaseJob -> CompleteJob, 64 Submits in flight) with 1, 8
//     and 32 workers, one job per lease and 16;
//   - latency: Submit -> leased by an idle worker, and lease -> first progress durable;
//   - in the same run, Celery + Redis doing the same (bench/baseline/celery_bench.py).
// --store=postgresql runs the same phases on a PostgreSQL 15 the bench starts (initdb in a
// temp dir; a fresh database for each phase).
//
//   build/bench/jobstream-worker-bench [--queued=1000000] [--duration=5s] [--store=postgresql]
//                                      [--phases=queue,workers,latency] [--server_bin=PATH]
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/postgres_process.h"
#include "tests/support/process.h"

ABSL_FLAG(int, queued, 1000000, "jobs in the deep-queue phase");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "length of each throughput phase");
ABSL_FLAG(int, celery_jobs, 20000, "jobs of the Celery baseline (0: skip it)");
ABSL_FLAG(std::vector<std::string>, workers, std::vector<std::string>({"1", "8", "32"}),
          "worker counts of the workers phase (e.g. 8, to time one case A/B)");
ABSL_FLAG(std::vector<std::string>, lease_sizes, std::vector<std::string>({"1", "16"}),
          "jobs each LeaseJob call asks for, in the workers phase");
ABSL_FLAG(std::vector<std::string>, endings,
          std::vector<std::string>({"complete", "lease"}),
          "how workers end their jobs in the workers phase: complete (a CompleteJob call "
          "each) and/or lease (carried by the worker's next LeaseJob)");
ABSL_FLAG(std::string, server_bin, "", "jobstream-server (default: ../server/ beside this binary)");
ABSL_FLAG(std::string, store, "rocksdb",
          "rocksdb, or postgresql: a PostgreSQL 15 started by the bench");
ABSL_FLAG(std::vector<std::string>, phases,
          std::vector<std::string>({"queue", "workers", "latency"}),
          "phases to run: queue (deep queue), workers (end to end), latency");

namespace {

using jobstream::bench::Call;
using jobstream::bench::Channels;
using jobstream::bench::Child;
using jobstream::bench::Percentile;
using jobstream::bench::RssKb;
using jobstream::bench::Spawn;
using jobstream::v1::Job;
using jobstream::v1::JobService;
using jobstream::v1::WorkerService;

constexpr char kType[] = "bench.work";

void Line(const std::string& s) { std::cout << s << std::endl; }

std::string WriteConfig(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/config.json";
  std::ofstream(path) << R"({"types": [{"name": ")" << kType
                      << R"(", "external": {"leaseDuration": "60s"}}]})";
  return path;
}

// On RocksDB in `data`, or on PostgreSQL when `url` is set.
Child StartServer(const std::string& bin, const std::string& data, const std::string& config,
                  const std::string& url) {
  std::vector<std::string> argv = {bin, "--listen=127.0.0.1:0", "--log=false", "--data_dir=" + data,
                                   "--config=" + config};
  if (!url.empty()) argv.push_back("--store=" + url);
  return Spawn(argv);
}

jobstream::bench::StartCall SubmitCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                                        std::atomic<int64_t>* counter) {
  auto stubs = std::make_shared<std::vector<std::unique_ptr<JobService::Stub>>>();
  for (auto& c : channels) stubs->push_back(JobService::NewStub(c));
  auto next = std::make_shared<std::atomic<size_t>>(0);
  return [stubs, next, counter](std::function<void(const grpc::Status&)> done) {
    auto* call = new Call<jobstream::v1::SubmitRequest, Job>;
    call->request.set_type(kType);
    (*call->request.mutable_params()->mutable_fields())["n"].set_number_value((*counter)++);
    (*stubs)[(*next)++ % stubs->size()]->async()->Submit(
        &call->ctx, &call->request, &call->response, [call, done](grpc::Status s) {
          done(s);
          delete call;
        });
  };
}

int64_t DirBytes(const std::string& dir) {
  int64_t bytes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) bytes += e.file_size();
  }
  return bytes;
}

// The numbers a list flag holds; exits with a message if one is not a positive number.
std::vector<int> Counts(const std::vector<std::string>& flag, absl::string_view name) {
  std::vector<int> counts;
  for (const std::string& s : flag) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n < 1 || n > 1000) {
      std::cerr << "--" << name << ": \"" << s << "\" is not a number from 1 to 1000\n";
      std::exit(2);
    }
    counts.push_back(n);
  }
  return counts;
}

// --endings as the bench's Ending values; exits with a message on another word.
std::vector<std::pair<std::string, jobstream::bench::Ending>> Endings() {
  std::vector<std::pair<std::string, jobstream::bench::Ending>> endings;
  for (const std::string& s : absl::GetFlag(FLAGS_endings)) {
    if (s == "complete") {
      endings.emplace_back("CompleteJob", jobstream::bench::Ending::kCompleteJob);
    } else if (s == "lease") {
      endings.emplace_back("next LeaseJob", jobstream::bench::Ending::kOnLease);
    } else {
      std::cerr << "--endings: \"" << s << "\" is neither complete nor lease\n";
      std::exit(2);
    }
  }
  return endings;
}

// End to end (bench_util's EndToEnd) with --workers workers (1, 8 and 32) leasing
// --lease_sizes jobs at a time (1 or 16), ending them each way --endings names.
void WorkersPhase(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                  absl::Duration duration) {
  Line("| workers | jobs per lease | ended by | submitted/s | completed/s (end to end) | p50 / p99 Submit |");
  Line("| --- | --- | --- | --- | --- | --- |");
  const auto endings = Endings();
  for (int workers : Counts(absl::GetFlag(FLAGS_workers), "workers")) {
    for (int max_jobs : Counts(absl::GetFlag(FLAGS_lease_sizes), "lease_sizes")) {
      for (const auto& [name, ending] : endings) {
        jobstream::bench::EndToEndRates r =
            jobstream::bench::EndToEnd(channels, kType, workers, max_jobs, duration, ending);
        Line(absl::StrFormat("| %d | %d | %s | %.0f | %.0f | %.2f / %.2f ms |", workers,
                             max_jobs, name, r.submitted, r.completed,
                             Percentile(r.submit_latency_us, 0.5) / 1000,
                             Percentile(r.submit_latency_us, 0.99) / 1000));
      }
    }
  }
  Line("");
}

// Latency: 8 idle workers waiting, one job at a time.
void LatencyPhase(const std::vector<std::shared_ptr<grpc::Channel>>& channels) {
  std::vector<double> to_lease_us, to_progress_us;
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> submitted_at_us{0};
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<WorkerService::Stub>> stubs;
  for (int w = 0; w < 8; ++w) {
    stubs.push_back(WorkerService::NewStub(channels[4 + w % 4]));
    threads.emplace_back([&, stub = stubs.back().get()] {
      while (!stop) {
        jobstream::v1::LeaseJobRequest request;
        request.add_types(kType);
        request.mutable_wait()->set_nanos(300'000'000);
        jobstream::v1::LeaseJobResponse response;
        grpc::ClientContext ctx;
        if (!stub->LeaseJob(&ctx, request, &response).ok() || response.jobs_size() == 0) {
          continue;
        }
        const int64_t leased_us = absl::ToUnixMicros(absl::Now());
        jobstream::v1::ReportProgressRequest progress;
        progress.set_lease_id(response.jobs(0).lease_id());
        progress.mutable_progress()->set_step("first");
        jobstream::v1::ReportProgressResponse reply;
        grpc::ClientContext pctx;
        stub->ReportProgress(&pctx, progress, &reply);
        const int64_t progressed_us = absl::ToUnixMicros(absl::Now());
        {
          std::lock_guard<std::mutex> lock(mu);
          to_lease_us.push_back(leased_us - submitted_at_us.load());
          to_progress_us.push_back(progressed_us - leased_us);
        }
        jobstream::v1::CompleteJobRequest complete;
        complete.set_lease_id(response.jobs(0).lease_id());
        Job job;
        grpc::ClientContext cctx;
        stub->CompleteJob(&cctx, complete, &job);
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));  // every worker is waiting
  auto stub = JobService::NewStub(channels[0]);
  for (int i = 0; i < 300; ++i) {
    jobstream::v1::SubmitRequest request;
    request.set_type(kType);
    submitted_at_us = absl::ToUnixMicros(absl::Now());
    Job job;
    grpc::ClientContext ctx;
    stub->Submit(&ctx, request, &job);
    absl::SleepFor(absl::Milliseconds(10));
  }
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  for (auto& t : threads) t.join();
  std::lock_guard<std::mutex> lock(mu);
  Line("| latency, 8 idle workers, one job at a time | p50 | p99 |");
  Line("| --- | --- | --- |");
  Line(absl::StrFormat("| Submit sent -> job leased by a worker (%d jobs) | %.2f ms | %.2f ms |",
                       to_lease_us.size(), Percentile(to_lease_us, 0.5) / 1000,
                       Percentile(to_lease_us, 0.99) / 1000));
  Line(absl::StrFormat("| lease -> first progress durable (ReportProgress) | %.2f ms | %.2f ms |",
                       Percentile(to_progress_us, 0.5) / 1000,
                       Percentile(to_progress_us, 0.99) / 1000));
  Line("");
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string self = std::filesystem::canonical("/proc/self/exe");
  const std::filesystem::path build = std::filesystem::path(self).parent_path().parent_path();
  const std::string server_bin = absl::GetFlag(FLAGS_server_bin).empty()
                                     ? std::string(build / "server/jobstream-server")
                                     : absl::GetFlag(FLAGS_server_bin);
  const std::string work = std::filesystem::temp_directory_path() / "jobstream-worker-bench";
  std::filesystem::remove_all(work);
  const std::string config = WriteConfig(work);
  const std::string data = work + "/data";
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const std::vector<std::string> phases = absl::GetFlag(FLAGS_phases);
  auto wanted = [&phases](const char* phase) {
    return std::find(phases.begin(), phases.end(), phase) != phases.end();
  };
  // The store of each phase: RocksDB in `data`, or a fresh PostgreSQL database.
  const bool postgres = absl::GetFlag(FLAGS_store) == "postgresql";
  if (!postgres && absl::GetFlag(FLAGS_store) != "rocksdb") {
    std::cerr << "--store: rocksdb or postgresql\n";
    return 2;
  }
  jobstream::testing::PostgresProcess pg;
  if (postgres) {
    if (absl::Status s = pg.Start(); !s.ok()) {
      std::cerr << "PostgreSQL: " << s << "\n";
      return 1;
    }
  }
  auto fresh_store = [&]() -> std::string {
    if (!postgres) return "";
    auto url = pg.NewDatabase();
    if (!url.ok()) {
      std::cerr << url.status() << "\n";
      exit(1);
    }
    return *url;
  };
  Line(absl::StrFormat(
      "Run on %s, %d cores, %s.",
      absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone()),
      std::thread::hardware_concurrency(),
      postgres ? "PostgreSQL 15 (started by the bench, default settings)" : "RocksDB"));
  Line("");

  // ---- A deep queue ------------------------------------------------------------------
  if (wanted("queue")) {
    const int n = absl::GetFlag(FLAGS_queued);
    const std::string url = fresh_store();
    Child server = StartServer(server_bin, data, config, url);
    absl::SleepFor(absl::Seconds(1));
    const int64_t idle_kb = RssKb(server.pid);
    std::atomic<int64_t> counter{0};
    auto channels = Channels(server.address, 4);
    auto submit = SubmitCalls(channels, &counter);
    // Closed loop until n are acknowledged (a little over n may be in flight at the end).
    absl::Mutex mu;
    int64_t acked = 0, failed = 0;
    int active = 256;
    const absl::Time start = absl::Now();
    std::function<void()> launch = [&] {
      submit([&](const grpc::Status& s) {
        bool again;
        {
          absl::MutexLock lock(&mu);
          if (s.ok()) ++acked; else ++failed;
          again = acked + 256 <= n;
          if (!again) --active;
        }
        if (again) launch();
      });
    };
    for (int i = 0; i < 256; ++i) launch();
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(+[](int* a) { return *a == 0; }, &active));
    }
    const double submit_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    absl::SleepFor(absl::Seconds(2));
    const int64_t queued_kb = RssKb(server.pid);
    // A crash, then the time until the server serves again, with every job still queued.
    jobstream::testing::StopProcess(server.pid, SIGKILL);
    const int64_t disk = postgres ? 0 : DirBytes(data);
    const absl::Time restart = absl::Now();
    server = StartServer(server_bin, data, config, url);
    const absl::Duration to_listen = absl::Now() - restart;
    auto stub = JobService::NewStub(jobstream::bench::Channels(server.address, 1)[0]);
    jobstream::v1::ListJobTypesResponse types;
    for (;;) {
      grpc::ClientContext ctx;
      if (stub->ListJobTypes(&ctx, {}, &types).ok()) break;
    }
    const absl::Duration to_serve = absl::Now() - restart;
    int64_t queued = 0;
    for (const auto& t : types.types()) queued += t.queued();
    absl::SleepFor(absl::Seconds(1));
    const int64_t restarted_kb = RssKb(server.pid);
    // Leasing out of the deep queue.
    auto workers = WorkerService::NewStub(jobstream::bench::Channels(server.address, 1)[0]);
    const absl::Time lease_start = absl::Now();
    int64_t leased = 0;
    while (leased < 10000) {
      jobstream::v1::LeaseJobRequest request;
      request.add_types(kType);
      request.set_max_jobs(100);
      jobstream::v1::LeaseJobResponse response;
      grpc::ClientContext ctx;
      if (!workers->LeaseJob(&ctx, request, &response).ok() || response.jobs_size() == 0) break;
      leased += response.jobs_size();
    }
    const double lease_seconds = absl::ToDoubleSeconds(absl::Now() - lease_start);
    server.Stop();
    Line("| deep queue | figure |");
    Line("| --- | --- |");
    Line(absl::StrFormat("| jobs submitted (256 in flight) | %d in %.1f s (%.0f/s), %d refused |",
                         acked, submit_seconds, acked / submit_seconds, failed));
    Line(absl::StrFormat("| server RSS idle / with them queued | %.1f MB / %.1f MB |",
                         idle_kb / 1024.0, queued_kb / 1024.0));
    if (!postgres) Line(absl::StrFormat("| store on disk | %.0f MB |", disk / 1048576.0));
    Line(absl::StrFormat("| kill -9, restart: listening after / serving after | %s / %s |",
                         absl::FormatDuration(absl::Trunc(to_listen, absl::Milliseconds(1))),
                         absl::FormatDuration(absl::Trunc(to_serve, absl::Milliseconds(1)))));
    Line(absl::StrFormat("| jobs queued after the restart (ListJobTypes) | %d |", queued));
    Line(absl::StrFormat("| server RSS after the restart | %.1f MB |", restarted_kb / 1024.0));
    Line(absl::StrFormat("| leasing 10,000 of them, 100 per LeaseJob | %.0f jobs/s |",
                         leased / lease_seconds));
    Line("");
    std::filesystem::remove_all(data);
  }

  // ---- End to end through workers, then latency, on one server ------------------------
  if (wanted("workers") || wanted("latency")) {
    Child server = StartServer(server_bin, data, config, fresh_store());
    auto channels = Channels(server.address, 8);
    if (wanted("workers")) WorkersPhase(channels, duration);
    if (wanted("latency")) LatencyPhase(channels);
    server.Stop();
    std::filesystem::remove_all(data);
  }

  // ---- Celery + Redis, the same run ----------------------------------------------------
  if (const int jobs = absl::GetFlag(FLAGS_celery_jobs); jobs > 0) {
    auto [code, out] = jobstream::bench::RunBaseline(
        "celery_bench.py", absl::StrCat("--jobs=", jobs, " --concurrency=8 --submitters=8"));
    Line("| baseline | figure |");
    Line("| --- | --- |");
    Line(absl::StrCat("| Celery 5.2 + Redis 7, 1 worker (prefork, 8 processes), 8 submitting "
                      "threads | ",
                      code == 0 ? std::string(absl::StripAsciiWhitespace(out)) : "failed", " |"));
    if (code != 0) {
      std::cerr << "the Celery baseline did not run (Debian's python3-celery, python3-redis and "
                   "redis-server): no figure for it\n";
      std::filesystem::remove_all(work);
      return 1;
    }
  }
  std::filesystem::remove_all(work);
  return 0;
}
