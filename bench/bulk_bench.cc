// jobstream-bulk-bench: a bulk retry of many failed jobs (issue 20: 100,000), on a real
// server on loopback. N demo.steps jobs that fail at once (max_attempts 1) are submitted
// by 32 callers and run by the server; once all have FAILED the type is paused (so the
// retried jobs stay queued and only the retry is timed), the server's peak resident
// memory is reset, and one BulkRetry over the FAILED jobs of the type is timed. Then a
// second BulkRetry (nothing left to change) and a BulkCancel of them all, timed too.
// Prints a Markdown table: time, jobs a second, the server's RSS before and its peak
// during each call.
//
//   build/bench/jobstream-bulk-bench [--jobs=100000] [--postgres] [--bin_dir=build]
#include <atomic>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/postgres_store.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "tests/support/postgres_process.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(int, jobs, 100000, "failed jobs to retry");
ABSL_FLAG(bool, postgres, false, "on PostgreSQL 15 (started here) instead of RocksDB");
ABSL_FLAG(std::string, bin_dir, "", "the build dir (default: the one this binary is in)");

namespace {

using jobstream::bench::Child;
using jobstream::v1::Job;
using jobstream::v1::JobService;

// The server's peak RSS starts again from its current RSS (Linux: clear_refs 5).
void ResetPeak(pid_t pid) {
  std::ofstream(absl::StrCat("/proc/", pid, "/clear_refs")) << "5";
}

int64_t Queued(JobService::Stub& stub, int64_t* failed_or_running) {
  grpc::ClientContext ctx;
  jobstream::v1::ListJobTypesResponse types;
  if (!stub.ListJobTypes(&ctx, {}, &types).ok()) return -1;
  for (const auto& t : types.types()) {
    if (t.name() == "demo.steps") {
      *failed_or_running = t.running();
      return t.queued();
    }
  }
  return -1;
}

struct Timed {
  double seconds = 0;
  jobstream::v1::BulkResponse counts;
  int64_t peak_kb = 0;
  int64_t before_kb = 0;
  bool ok = false;
  std::string error;
};

Timed TimeBulk(JobService::Stub& stub, pid_t server, bool cancel, Job::State state) {
  Timed t;
  ResetPeak(server);
  t.before_kb = jobstream::bench::RssKb(server);
  jobstream::v1::BulkRequest request;
  request.mutable_filter()->set_type("demo.steps");
  request.mutable_filter()->add_states(state);
  request.set_reason("bench");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(30));
  const absl::Time start = absl::Now();
  grpc::Status status = cancel ? stub.BulkCancel(&ctx, request, &t.counts)
                               : stub.BulkRetry(&ctx, request, &t.counts);
  t.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  t.peak_kb = jobstream::bench::PeakRssKb(server);
  t.ok = status.ok();
  t.error = status.error_message();
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string bin = jobstream::bench::BinDir(argv[0], absl::GetFlag(FLAGS_bin_dir));
  const int jobs = absl::GetFlag(FLAGS_jobs);
  jobstream::testing::TempDir dir;
  std::vector<std::string> server_argv = {
      bin + "/server/jobstream-server", "--listen=127.0.0.1:0", "--log=false",
      "--metrics_listen=off", "--max_submits_per_second=0", "--retry_backoff=0s",
      "--data_dir=" + dir.sub("data"), absl::StrCat("--max_queued_per_tenant=", jobs * 2)};
  jobstream::testing::PostgresProcess pg;
  if (absl::GetFlag(FLAGS_postgres) && !jobstream::bench::UsePostgres(pg, server_argv)) {
    return 1;
  }
  Child server = jobstream::bench::Spawn(server_argv);
  auto channels = jobstream::bench::Channels(server.address, 8);
  auto stub = JobService::NewStub(channels[0]);

  // N jobs that fail at once, submitted by 32 callers.
  const absl::Time submit_start = absl::Now();
  std::atomic<int> next{0}, errors{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 32; ++t) {
    callers.emplace_back([&, t] {
      auto s = JobService::NewStub(channels[t % channels.size()]);
      for (int i = next++; i < jobs; i = next++) {
        jobstream::v1::SubmitRequest r;
        r.set_type("demo.steps");
        r.set_max_attempts(1);
        auto& f = *r.mutable_params()->mutable_fields();
        f["steps"].mutable_list_value()->add_values()->set_string_value("a");
        f["step_ms"].set_number_value(0);
        f["ticks"].set_number_value(0);
        f["fail_at"].set_string_value("a");
        grpc::ClientContext ctx;
        Job job;
        if (!s->Submit(&ctx, r, &job).ok()) ++errors;
      }
    });
  }
  for (auto& t : callers) t.join();
  if (errors > 0) {
    std::cerr << errors << " Submit calls failed\n";
    return 1;
  }
  for (;;) {  // until every one has run and failed
    int64_t running = 0;
    const int64_t queued = Queued(*stub, &running);
    if (queued < 0) {
      std::cerr << "ListJobTypes failed\n";
      return 1;
    }
    if (queued == 0 && running == 0) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  const double fill_seconds = absl::ToDoubleSeconds(absl::Now() - submit_start);
  {
    grpc::ClientContext ctx;
    jobstream::v1::PauseTypeRequest r;
    r.set_type("demo.steps");
    r.set_reason("bench: retried jobs stay queued");
    jobstream::v1::JobTypeInfo info;
    if (!stub->PauseType(&ctx, r, &info).ok()) {
      std::cerr << "PauseType failed\n";
      return 1;
    }
  }

  std::printf("Store: %s; %d jobs submitted, run and failed in %.1f s\n\n",
              absl::GetFlag(FLAGS_postgres) ? "PostgreSQL 15" : "RocksDB", jobs, fill_seconds);
  std::printf("| call | matched | changed | time | jobs/s | server RSS before | peak during |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  int failures = 0;
  auto row = [&](const char* name, const Timed& t, int64_t want_changed) {
    if (!t.ok || t.counts.changed() != want_changed) {
      std::cerr << name << ": " << (t.ok ? "" : t.error) << " changed " << t.counts.changed()
                << ", expected " << want_changed << "\n";
      ++failures;
    }
    std::printf("| %s | %lld | %lld | %.2f s | %.0f | %.0f MB | %.0f MB |\n", name,
                static_cast<long long>(t.counts.matched()),
                static_cast<long long>(t.counts.changed()), t.seconds,
                t.counts.changed() / std::max(t.seconds, 1e-9), t.before_kb / 1024.0,
                t.peak_kb / 1024.0);
  };
  row("BulkRetry (FAILED)", TimeBulk(*stub, server.pid, false, Job::FAILED), jobs);
  row("BulkRetry again (none left)", TimeBulk(*stub, server.pid, false, Job::FAILED), 0);
  row("BulkCancel (QUEUED)", TimeBulk(*stub, server.pid, true, Job::QUEUED), jobs);
  server.Stop();
  return failures == 0 ? 0 : 1;
}
