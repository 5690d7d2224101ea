// jobstream-schedule-bench: many schedules firing at once (bench/RESULTS.md). Creates
// --schedules schedules of "* * * * *" (each fires at every whole minute) on a fresh
// RocksDB server (or, with --postgres, a server on a PostgreSQL of its own), then over --minutes minute boundaries measures each fire's lag — its
// job's create_time minus its nominal fire time — and the server's CPU time per minute.
// The jobs are of an external type nobody works on, so only firing is measured.
// Not a test.
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/postgres_store.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/schedules.grpc.pb.h"
#include "tests/support/postgres_process.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(std::string, bin_dir, "", "build dir holding server/ (default: beside this binary's)");
ABSL_FLAG(int, schedules, 10000, "schedules, each firing every minute");
ABSL_FLAG(int, minutes, 2, "minute boundaries measured");
ABSL_FLAG(bool, celery, true, "then Celery beat with as many schedules (bench/baseline/celery_beat.py)");
ABSL_FLAG(bool, postgres, false,
          "run the server on a PostgreSQL of the bench's own (initdb in a temp dir) instead of "
          "RocksDB");

namespace {

using jobstream::bench::Child;
using jobstream::bench::Percentile;
using jobstream::v1::Job;

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string bin = jobstream::bench::BinDir(argv[0], absl::GetFlag(FLAGS_bin_dir));
  const int count = absl::GetFlag(FLAGS_schedules);
  jobstream::testing::TempDir dir;
  const std::string config = dir.sub("config.json");
  std::ofstream(config) << R"({"types": [{"name": "sched.noop", "external": {}}]})";
  std::vector<std::string> server_argv = {
      bin + "/server/jobstream-server", "--listen=127.0.0.1:0", "--log=false",
      "--max_submits_per_second=0", "--config=" + config, "--data_dir=" + dir.sub("data"),
      absl::StrCat("--max_queued_per_tenant=", count * (absl::GetFlag(FLAGS_minutes) + 2))};
  jobstream::testing::PostgresProcess pg;
  if (absl::GetFlag(FLAGS_postgres) && !jobstream::bench::UsePostgres(pg, server_argv)) {
    return 1;
  }
  Child server = jobstream::bench::Spawn(server_argv);
  std::printf("Store: %s\n\n", absl::GetFlag(FLAGS_postgres) ? "PostgreSQL 15" : "RocksDB");
  auto channels = jobstream::bench::Channels(server.address, 8);

  // Created 16 at a time.
  const absl::Time create_start = absl::Now();
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> creators;
  for (int t = 0; t < 16; ++t) {
    creators.emplace_back([&, t] {
      auto stub = jobstream::v1::ScheduleService::NewStub(channels[t % channels.size()]);
      for (int i = next++; i < count; i = next++) {
        jobstream::v1::CreateScheduleRequest request;
        request.mutable_schedule()->set_id(absl::StrCat("s", i));
        request.mutable_schedule()->set_cron("* * * * *");
        request.mutable_schedule()->set_overlap(jobstream::v1::Schedule::ALLOW);
        request.mutable_schedule()->mutable_job()->set_type("sched.noop");
        grpc::ClientContext ctx;
        jobstream::v1::Schedule created;
        if (!stub->CreateSchedule(&ctx, request, &created).ok()) ++failed;
      }
    });
  }
  for (auto& t : creators) t.join();
  const double create_seconds = absl::ToDoubleSeconds(absl::Now() - create_start);
  if (failed > 0) {
    std::cerr << failed << " CreateSchedule calls failed\n";
    return 1;
  }

  // Each minute boundary: wait until its jobs are all there, then read their create times.
  auto jobs = jobstream::v1::JobService::NewStub(channels[0]);
  std::printf("| minute | fires | p50 lag | p99 lag | max lag | all submitted after | server CPU that minute |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  std::vector<double> all_lags;
  for (int m = 0; m < absl::GetFlag(FLAGS_minutes); ++m) {
    const absl::Time boundary =
        absl::FromUnixSeconds((absl::ToUnixSeconds(absl::Now()) / 60 + 1) * 60);
    absl::SleepFor(boundary - absl::Now() - absl::Seconds(1));
    const double cpu_before = jobstream::bench::CpuSeconds(server.pid);
    absl::SleepFor(absl::Seconds(59));  // the minute's firing, and then some
    const double cpu = jobstream::bench::CpuSeconds(server.pid) - cpu_before;
    const std::string fire_time =
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", boundary, absl::UTCTimeZone());
    std::vector<double> lags;
    std::string token;
    do {
      jobstream::v1::ListJobsRequest request;
      (*request.mutable_labels())["jobstream/fire-time"] = fire_time;
      request.set_page_size(1000);
      request.set_page_token(token);
      jobstream::v1::ListJobsResponse page;
      grpc::ClientContext ctx;
      if (grpc::Status s = jobs->ListJobs(&ctx, request, &page); !s.ok()) {
        std::cerr << "ListJobs: " << s.error_message() << "\n";
        return 1;
      }
      for (const Job& job : page.jobs()) {
        lags.push_back(
            absl::ToDoubleMilliseconds(jobstream::v1::ToTime(job.create_time()) - boundary));
      }
      token = page.next_page_token();
    } while (!token.empty());
    if (static_cast<int>(lags.size()) != count) {
      std::cerr << "minute " << fire_time << ": " << lags.size() << " jobs, not " << count << "\n";
      return 1;
    }
    all_lags.insert(all_lags.end(), lags.begin(), lags.end());
    std::vector<double> sorted = lags;
    const double max = *std::max_element(sorted.begin(), sorted.end());
    std::printf("| %s | %zu | %.0f ms | %.0f ms | %.0f ms | %.2f s | %.2f s |\n", fire_time.c_str(),
                lags.size(), Percentile(sorted, 0.5), Percentile(sorted, 0.99), max, max / 1000,
                cpu);
  }
  std::printf("\n%d schedules created in %.1f s (%.0f/s, 16 callers)\n", count, create_seconds,
              count / create_seconds);
  server.Stop();
  if (!absl::GetFlag(FLAGS_celery)) return 0;
  auto [code, out] = jobstream::bench::RunBaseline(
      "celery_beat.py",
      absl::StrCat("--entries=", count, " --minutes=", absl::GetFlag(FLAGS_minutes)));
  std::printf("\nCelery 5.2 beat + Redis 7, the same %d schedules (crontab(), every minute):\n\n%s",
              count, out.c_str());
  if (code != 0) {
    std::cerr << "the Celery beat baseline did not run (Debian's python3-celery, python3-redis "
                 "and redis-server): no figure for it\n";
    return 1;
  }
  return 0;
}
