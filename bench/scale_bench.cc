// jobstream-scale-bench: the PostgreSQL store beside the RocksDB one, and beside pgbench
// running Submit's own writes on the same PostgreSQL, all in one run (bench/RESULTS.md):
//   - durable Submit/s at 64 in flight: RocksDB; PostgreSQL with one server and with two;
//     pgbench inserting a job row and its CREATED event and notifying, per transaction;
//   - end-to-end jobs/s (submit, run in the server, WaitJob answered), 32 callers;
//   - PROGRESS events/s to 1,000 watchers of one job, spread over the servers.
// Starts its own PostgreSQL (initdb in a temp dir) and servers; not a test.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/bench_util.h"
#include "tests/support/postgres_process.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(std::string, bin_dir, "", "build dir holding server/ (default: beside this binary's)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "length of each throughput phase");
ABSL_FLAG(int, in_flight, 64, "Submits in flight");
ABSL_FLAG(int, watchers, 1000, "watchers of the fan-out phase");
ABSL_FLAG(int, event_rate, 100, "PROGRESS events per second of the watched job");
ABSL_FLAG(absl::Duration, event_duration, absl::Seconds(5), "how long the watched job reports");
ABSL_FLAG(int, pool_size, 8, "--pg_pool_size of each server");
ABSL_FLAG(std::vector<std::string>, phases, std::vector<std::string>({"submit", "jobs", "fanout"}),
          "phases to run (submit, jobs, fanout); the others print as 0");

namespace {

using jobstream::bench::Channels;
using jobstream::bench::Child;
using jobstream::bench::Percentile;
using jobstream::bench::Spawn;
using jobstream::bench::Watcher;
using jobstream::v1::Job;
using jobstream::v1::JobService;

struct Servers {
  std::vector<Child> children;
  std::vector<std::shared_ptr<grpc::Channel>> channels;  // 8 per server
  ~Servers() {
    for (Child& c : children) c.Stop();
  }
};

// `n` servers on `url` (or one RocksDB server when url is empty).
std::unique_ptr<Servers> StartServers(const std::string& bin, const std::string& url, int n,
                                      jobstream::testing::TempDir& dir) {
  static int counter = 0;
  auto servers = std::make_unique<Servers>();
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv = {bin + "/server/jobstream-server", "--listen=127.0.0.1:0",
                                     "--log=false", "--max_submits_per_second=0",
                                     "--data_dir=" + dir.sub(absl::StrCat("rocks", counter++))};
    if (!url.empty()) {
      argv.push_back("--store=" + url);
      argv.push_back(absl::StrCat("--server_id=s", i));
      argv.push_back(absl::StrCat("--pg_pool_size=", absl::GetFlag(FLAGS_pool_size)));
    }
    servers->children.push_back(Spawn(argv));
    for (auto& c : Channels(servers->children.back().address, 8)) servers->channels.push_back(c);
  }
  return servers;
}

// A fresh database on `pg`; its URL.
std::string NewDatabase(jobstream::testing::PostgresProcess& pg) {
  auto url = pg.NewDatabase();
  if (!url.ok()) {
    std::cerr << url.status() << "\n";
    exit(1);
  }
  return *url;
}

// pgbench running Submit's writes (a job row, its CREATED event, a NOTIFY) on `url`'s
// tables, as created by a server; transactions per second.
double Pgbench(jobstream::testing::PostgresProcess& pg, const std::string& db,
               jobstream::testing::TempDir& dir, int clients, absl::Duration duration) {
  const std::string script = dir.sub("submit.sql");
  FILE* f = fopen(script.c_str(), "w");
  // Rows the size of a Submit's (a Job record ~120 bytes, an event ~150 bytes).
  fputs(
      "BEGIN;\n"
      "WITH j AS (INSERT INTO jobs (id, tenant, type, state, priority, ready_ms, create_ms, "
      "last_sequence, record) VALUES (md5(random()::text), '', 'demo.steps', 1, 0, "
      "(extract(epoch from now()) * 1000)::bigint, (extract(epoch from now()) * 1000)::bigint, "
      "1, decode(repeat('ab', 120), 'hex')) RETURNING id) "
      "INSERT INTO events (job_id, sequence, event) SELECT id, 1, decode(repeat('cd', 150), "
      "'hex') FROM j;\n"
      "SELECT pg_notify('jobstream_events', 'bench 1 1');\n"
      "END;\n",
      f);
  fclose(f);
  auto [code, out] = jobstream::testing::RunCommand(absl::StrCat(
      "/usr/lib/postgresql/15/bin/pgbench -n -M prepared -h 127.0.0.1 -p ", pg.port(),
      " -U postgres -c ", clients, " -j 2 -T ", absl::ToInt64Seconds(duration), " -f ", script,
      " ", db, " 2>&1"));
  for (absl::string_view l : absl::StrSplit(out, '\n')) {
    double tps = 0;
    if (absl::ConsumePrefix(&l, "tps = ") &&
        absl::SimpleAtod(l.substr(0, l.find(' ')), &tps)) {
      return tps;
    }
  }
  std::cerr << "pgbench failed (" << code << "):\n" << out << "\n";
  return 0;
}

// Closed-loop Submit (run a day ahead: only Submit is measured).
jobstream::bench::Load Submits(Servers& servers) {
  return jobstream::bench::ClosedLoop(absl::GetFlag(FLAGS_in_flight),
                                      absl::GetFlag(FLAGS_duration),
                                      jobstream::bench::SubmitCalls(servers.channels));
}

// 32 callers, each: Submit a one-step job, WaitJob until it ends; finished jobs per second.
double EndToEnd(Servers& servers) {
  std::atomic<int64_t> finished{0};
  const absl::Time end = absl::Now() + absl::GetFlag(FLAGS_duration);
  std::vector<std::thread> callers;
  for (int t = 0; t < 32; ++t) {
    callers.emplace_back([&, t] {
      auto stub = JobService::NewStub(servers.channels[t % servers.channels.size()]);
      while (absl::Now() < end) {
        jobstream::v1::SubmitRequest request;
        request.set_type("demo.steps");
        auto& fields = *request.mutable_params()->mutable_fields();
        fields["steps"].mutable_list_value()->add_values()->set_string_value("x");
        fields["step_ms"].set_number_value(0);
        fields["ticks"].set_number_value(0);
        Job job;
        grpc::ClientContext submit;
        if (!stub->Submit(&submit, request, &job).ok()) continue;
        jobstream::v1::WaitJobRequest wait;
        wait.set_job_id(job.id());
        wait.mutable_timeout()->set_seconds(30);
        grpc::ClientContext waiting;
        Job done;
        if (stub->WaitJob(&waiting, wait, &done).ok() && done.state() == Job::SUCCEEDED) {
          ++finished;
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  return finished / absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration));
}

struct FanOut {
  int finished = 0;
  int64_t delivered = 0;
  double per_second = 0, p50_ms = 0, p99_ms = 0;
};

// One job reporting event_rate PROGRESS a second, watched by `watchers` spread over the
// servers' channels.
FanOut Fan(Servers& servers) {
  const int n = absl::GetFlag(FLAGS_watchers);
  const absl::Duration span = absl::GetFlag(FLAGS_event_duration);
  const int ticks = static_cast<int>(absl::GetFlag(FLAGS_event_rate) * absl::ToDoubleSeconds(span));
  auto stub = JobService::NewStub(servers.channels[0]);
  jobstream::v1::SubmitRequest request;
  request.set_type("demo.steps");
  auto& fields = *request.mutable_params()->mutable_fields();
  fields["steps"].mutable_list_value()->add_values()->set_string_value("report");
  fields["step_ms"].set_number_value(absl::ToInt64Milliseconds(span));
  fields["ticks"].set_number_value(ticks);
  request.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Seconds(4)));
  Job job;
  grpc::ClientContext ctx;
  if (!stub->Submit(&ctx, request, &job).ok()) return {};
  Watcher::Stats stats;
  std::vector<std::unique_ptr<JobService::Stub>> stubs;
  for (auto& c : servers.channels) stubs.push_back(JobService::NewStub(c));
  jobstream::bench::WatchToEnd(stubs, job.id(), n, span + absl::Seconds(40), &stats);
  absl::MutexLock lock(&stats.mu);
  return {stats.done, stats.progress, stats.progress / absl::ToDoubleSeconds(span),
          Percentile(stats.latency_us, 0.5) / 1000, Percentile(stats.latency_us, 0.99) / 1000};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string bin = jobstream::bench::BinDir(argv[0], absl::GetFlag(FLAGS_bin_dir));
  jobstream::testing::TempDir dir;
  jobstream::testing::PostgresProcess pg;
  if (absl::Status s = pg.Start(); !s.ok()) {
    std::cerr << "PostgreSQL: " << s << "\n";
    return 1;
  }
  auto line = [](const std::string& s) { std::cout << s << std::endl; };
  line(absl::StrFormat("Run on %s UTC, %d cores; each throughput phase %s, %d Submits in flight.",
                       absl::FormatTime("%Y-%m-%d %H:%M", absl::Now(), absl::UTCTimeZone()),
                       std::thread::hardware_concurrency(),
                       absl::FormatDuration(absl::GetFlag(FLAGS_duration)),
                       absl::GetFlag(FLAGS_in_flight)));
  line("");

  // pgbench on the schema a server made (then left), Submit's writes per transaction.
  double pgbench_tps = 0;
  const std::vector<std::string> phases = absl::GetFlag(FLAGS_phases);
  auto wanted = [&phases](const char* phase) {
    return std::find(phases.begin(), phases.end(), phase) != phases.end();
  };
  if (wanted("submit")) {
    const std::string url = NewDatabase(pg);
    StartServers(bin, url, 1, dir);  // migrates, then stops
    pgbench_tps = Pgbench(pg, url.substr(url.rfind('/') + 1), dir, absl::GetFlag(FLAGS_in_flight),
                          absl::GetFlag(FLAGS_duration));
  }

  struct Row {
    std::string store;
    double submit = 0, p50 = 0, p99 = 0, jobs = 0;
    FanOut fan;
  };
  std::vector<Row> rows;
  const std::vector<std::pair<std::string, int>> setups = {
      {"RocksDB, 1 server", 0}, {"PostgreSQL, 1 server", 1}, {"PostgreSQL, 2 servers", 2}};
  for (const auto& setup : setups) {
    const std::string& name = setup.first;
    const int n = setup.second;  // servers; 0: RocksDB (clang 14 cannot capture a binding)
    Row row;
    row.store = name;
    auto start = [&] {
      return n == 0 ? StartServers(bin, "", 1, dir)
                    : StartServers(bin, NewDatabase(pg), n, dir);
    };
    if (wanted("submit")) {
      auto servers = start();
      jobstream::bench::Load load = Submits(*servers);
      row.submit = load.rate();
      row.p50 = load.percentile(0.5) / 1000;
      row.p99 = load.percentile(0.99) / 1000;
      if (load.errors > 0) std::cerr << name << ": " << load.first_error << "\n";
    }
    if (wanted("jobs")) {
      auto servers = start();
      row.jobs = EndToEnd(*servers);
    }
    if (wanted("fanout")) {
      auto servers = start();
      row.fan = Fan(*servers);
    }
    rows.push_back(row);
    std::cerr << name << " done\n";
  }

  line("| store | durable Submit/s | p50 | p99 | ratio to pgbench | jobs/s end to end |");
  line("| --- | --- | --- | --- | --- | --- |");
  line(absl::StrFormat("| pgbench, Submit's writes | %.0f | | | 1.00 | |", pgbench_tps));
  for (const Row& r : rows) {
    line(absl::StrFormat("| %s | %.0f | %.2f ms | %.2f ms | %.2f | %.0f |", r.store, r.submit,
                         r.p50, r.p99, pgbench_tps > 0 ? r.submit / pgbench_tps : 0, r.jobs));
  }
  line("");
  line(absl::StrFormat("| fan-out: %d watchers, %d PROGRESS/s for %s | finished | delivered/s | "
                       "commit -> receive p50 / p99 |",
                       absl::GetFlag(FLAGS_watchers), absl::GetFlag(FLAGS_event_rate),
                       absl::FormatDuration(absl::GetFlag(FLAGS_event_duration))));
  line("| --- | --- | --- | --- |");
  for (const Row& r : rows) {
    line(absl::StrFormat("| %s | %d | %.0f | %.2f ms / %.2f ms |", r.store, r.fan.finished,
                         r.fan.per_second, r.fan.p50_ms, r.fan.p99_ms));
  }
  return 0;
}
