// jobstream-bench: measures a real jobstream-server on loopback, and in the same run the
// machine's raw ceilings (synced RocksDB writes with 64 writers; a bare gRPC echo), so
// every figure can be read as a ratio. Prints a Markdown report (bench/RESULTS.md).
//
//   build/bench/jobstream-bench [--duration=3s] [--watchers=1000] [--idle_streams=10000]
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/echo.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "rocksdb/db.h"
#include "jobstream/v1/job_states.h"
#include "bench/bench_util.h"

ABSL_FLAG(std::string, server_bin, "", "jobstream-server (default: ../server/ beside this binary)");
ABSL_FLAG(std::vector<std::string>, server_flags, {},
          "more flags for every server the bench starts, e.g. --log=false to time the request log");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(3), "length of each throughput phase");
ABSL_FLAG(int, watchers, 1000, "watchers of the event fan-out phase");
ABSL_FLAG(int, event_rate, 100, "PROGRESS events per second of the watched job");
ABSL_FLAG(absl::Duration, event_duration, absl::Seconds(5), "how long the watched job reports");
ABSL_FLAG(int, idle_streams, 10000, "idle WatchJob streams for the memory phase");
ABSL_FLAG(std::string, serve_echo, "", "internal: serve the echo service on this address");

namespace {

using jobstream::v1::Job;
using jobstream::v1::JobEvent;
using jobstream::v1::JobService;

using jobstream::bench::Call;
using jobstream::bench::Channels;
using jobstream::bench::Child;
using jobstream::bench::ClosedLoop;
using jobstream::bench::Load;
using jobstream::bench::Percentile;
using jobstream::bench::RssKb;
using jobstream::bench::Spawn;
using jobstream::bench::StartCall;
using jobstream::bench::SubmitCalls;
using jobstream::bench::Watcher;

// The raw synced-write ceiling: `writers` threads each writing small synced batches.
double RawSyncedWrites(int writers, absl::Duration duration) {
  const std::string dir = std::filesystem::temp_directory_path() / "jobstream-bench-raw";
  std::filesystem::remove_all(dir);
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::Open(options, dir, &db).ok()) abort();
  std::atomic<int64_t> writes{0};
  const absl::Time end = absl::Now() + duration;
  std::vector<std::thread> threads;
  const absl::Time begin = absl::Now();
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([&, t] {
      rocksdb::WriteOptions wo;
      wo.sync = true;
      const std::string value(200, 'v');
      for (int64_t i = 0; absl::Now() < end; ++i) {
        rocksdb::WriteBatch batch;
        batch.Put(absl::StrCat(t, "/", i), value);
        if (db->Write(wo, &batch).ok()) ++writes;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double rate = writes / absl::ToDoubleSeconds(absl::Now() - begin);
  delete db;
  std::filesystem::remove_all(dir);
  return rate;
}

class EchoService final : public jobstream::bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx,
                                 const jobstream::bench::EchoMessage* request,
                                 jobstream::bench::EchoMessage* response) override {
    *response = *request;
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int ServeEcho(const std::string& address) {
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  std::cout << "listening on 127.0.0.1:" << port << std::endl;
  server->Wait();
  return 0;
}

Job MustSubmit(JobService::Stub* stub, const std::string& params_json_steps, int64_t step_ms,
               int ticks, absl::Time run_at) {
  jobstream::v1::SubmitRequest request;
  request.set_type("demo.steps");
  auto& fields = *request.mutable_params()->mutable_fields();
  fields["steps"].mutable_list_value()->add_values()->set_string_value(params_json_steps);
  fields["step_ms"].set_number_value(step_ms);
  fields["ticks"].set_number_value(ticks);
  request.mutable_run_at()->set_seconds(absl::ToUnixSeconds(run_at));
  grpc::ClientContext ctx;
  Job job;
  grpc::Status s = stub->Submit(&ctx, request, &job);
  if (!s.ok()) {
    std::cerr << "submit failed: " << s.error_message() << "\n";
    exit(1);
  }
  return job;
}

// A server's command line: the binary, a free loopback port, `data`, and --server_flags.
std::vector<std::string> ServerArgs(const std::string& server_bin, const std::string& data) {
  std::vector<std::string> args = {server_bin, "--listen=127.0.0.1:0", "--data_dir=" + data};
  for (const std::string& flag : absl::GetFlag(FLAGS_server_flags)) args.push_back(flag);
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as the server does
  if (!absl::GetFlag(FLAGS_serve_echo).empty()) return ServeEcho(absl::GetFlag(FLAGS_serve_echo));
  const std::string self = std::filesystem::canonical("/proc/self/exe");
  std::string server_bin = absl::GetFlag(FLAGS_server_bin);
  if (server_bin.empty()) {
    server_bin = std::filesystem::path(self).parent_path().parent_path() / "server/jobstream-server";
  }
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  auto line = [](const std::string& s) { std::cout << s << std::endl; };
  line(absl::StrFormat("Run on %s, %d cores; each throughput phase %s.",
                       absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone()),
                       std::thread::hardware_concurrency(), absl::FormatDuration(duration)));
  line("");

  // Ceilings.
  const double raw64 = RawSyncedWrites(64, duration);
  const double raw1 = RawSyncedWrites(1, duration);
  Child echo = Spawn({self, "--serve_echo=127.0.0.1:0"});
  double echo_rate;
  {
    auto channels = Channels(echo.address, 4);
    std::vector<std::unique_ptr<jobstream::bench::Echo::Stub>> stubs;
    for (auto& c : channels) stubs.push_back(jobstream::bench::Echo::NewStub(c));
    std::atomic<size_t> next{0};
    Load load = ClosedLoop(64, duration, [&](std::function<void(const grpc::Status&)> done) {
      auto* call = new Call<jobstream::bench::EchoMessage, jobstream::bench::EchoMessage>;
      call->request.set_payload(std::string(64, 'x'));
      stubs[next++ % stubs.size()]->async()->Echo(&call->ctx, &call->request, &call->response,
                                                  [call, done](grpc::Status s) {
                                                    done(s);
                                                    delete call;
                                                  });
    });
    echo_rate = load.rate();
  }
  echo.Stop();
  line("| ceiling | figure |");
  line("| --- | --- |");
  line(absl::StrFormat("| RocksDB synced WriteBatch, 1 writer | %.0f/s |", raw1));
  line(absl::StrFormat("| RocksDB synced WriteBatch, 64 writers | %.0f/s |", raw64));
  line(absl::StrFormat("| bare gRPC unary echo, 64 in flight | %.0f/s |", echo_rate));
  line("");

  // Durable Submit.
  const std::string data = std::filesystem::temp_directory_path() / "jobstream-bench-data";
  std::filesystem::remove_all(data);
  Child server = Spawn(ServerArgs(server_bin, data));
  line("| durable Submit | per second | p50 | p99 | ratio to raw synced (64 writers) |");
  line("| --- | --- | --- | --- | --- |");
  {
    auto channels = Channels(server.address, 4);
    StartCall submit = SubmitCalls(channels);
    for (int in_flight : {1, 16, 64, 256}) {
      Load load = ClosedLoop(in_flight, duration, submit);
      if (load.errors > 0) std::cerr << "submit errors: " << load.first_error << "\n";
      line(absl::StrFormat("| %d in flight | %.0f | %.2f ms | %.2f ms | %.2f |", in_flight,
                           load.rate(), load.percentile(0.5) / 1000, load.percentile(0.99) / 1000,
                           load.rate() / raw64));
    }
  }
  server.Stop();
  std::filesystem::remove_all(data);
  line("");

  // GetStatus, fan-out and idle streams on a fresh server.
  server = Spawn(ServerArgs(server_bin, data));
  auto channels = Channels(server.address, 8);
  auto stub = JobService::NewStub(channels[0]);
  {
    Job job = MustSubmit(stub.get(), "x", 0, 0, absl::Now() + absl::Hours(24));
    std::vector<std::unique_ptr<JobService::Stub>> stubs;
    for (int i = 0; i < 4; ++i) stubs.push_back(JobService::NewStub(channels[i]));
    std::atomic<size_t> next{0};
    Load load = ClosedLoop(64, duration, [&](std::function<void(const grpc::Status&)> done) {
      auto* call = new Call<jobstream::v1::GetStatusRequest, Job>;
      call->request.set_job_id(job.id());
      stubs[next++ % stubs.size()]->async()->GetStatus(&call->ctx, &call->request,
                                                       &call->response,
                                                       [call, done](grpc::Status s) {
                                                         done(s);
                                                         delete call;
                                                       });
    });
    line("| GetStatus | per second | p50 | p99 | ratio to bare echo |");
    line("| --- | --- | --- | --- | --- |");
    line(absl::StrFormat("| 64 in flight | %.0f | %.2f ms | %.2f ms | %.2f |", load.rate(),
                         load.percentile(0.5) / 1000, load.percentile(0.99) / 1000,
                         load.rate() / echo_rate));
    line("");
  }
  {
    const int n = absl::GetFlag(FLAGS_watchers);
    const int rate = absl::GetFlag(FLAGS_event_rate);
    const absl::Duration span = absl::GetFlag(FLAGS_event_duration);
    const int ticks = static_cast<int>(rate * absl::ToDoubleSeconds(span));
    // Starts once every watcher is attached.
    Job job = MustSubmit(stub.get(), "report", absl::ToInt64Milliseconds(span), ticks,
                         absl::Now() + absl::Seconds(3));
    Watcher::Stats stats;
    std::vector<std::unique_ptr<JobService::Stub>> stubs;
    for (auto& c : channels) stubs.push_back(JobService::NewStub(c));
    jobstream::bench::WatchToEnd(stubs, job.id(), n, span + absl::Seconds(30), &stats);
    absl::MutexLock lock(&stats.mu);
    const double per_second = stats.progress / absl::ToDoubleSeconds(span);
    line("| fan-out | figure |");
    line("| --- | --- |");
    line(absl::StrFormat("| watchers of one job | %d (%d finished) |", n, stats.done));
    line(absl::StrFormat("| PROGRESS events the job committed | %d over %s |", ticks,
                         absl::FormatDuration(span)));
    line(absl::StrFormat("| PROGRESS events delivered, all watchers | %d (%.0f/s) |", stats.progress,
                         per_second));
    line(absl::StrFormat("| commit -> receive p50 / p99 | %.2f ms / %.2f ms |",
                         Percentile(stats.latency_us, 0.5) / 1000,
                         Percentile(stats.latency_us, 0.99) / 1000));
    line("");
  }
  server.Stop();
  std::filesystem::remove_all(data);
  {
    // A fresh server and connections: what an idle stream costs, apart from what the
    // phases above left in the allocator and in gRPC's per-connection estimates.
    server = Spawn(ServerArgs(server_bin, data));
    channels = Channels(server.address, 8);
    stub = JobService::NewStub(channels[0]);
    const int n = absl::GetFlag(FLAGS_idle_streams);
    Job job = MustSubmit(stub.get(), "x", 0, 0, absl::Now() + absl::Hours(24));
    absl::SleepFor(absl::Seconds(1));
    const int64_t before_kb = RssKb(server.pid);
    Watcher::Stats stats;
    stats.record = false;
    std::vector<std::unique_ptr<JobService::Stub>> stubs;
    for (auto& c : channels) stubs.push_back(JobService::NewStub(c));
    std::vector<std::unique_ptr<Watcher>> watchers;
    for (int i = 0; i < n; ++i) {
      watchers.push_back(std::make_unique<Watcher>(stubs[i % stubs.size()].get(), job.id(), &stats));
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (;;) {
      {
        absl::MutexLock lock(&stats.mu);
        if (stats.first_seen == n || absl::Now() > deadline) break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    absl::SleepFor(absl::Seconds(1));
    const int64_t after_kb = RssKb(server.pid);
    int open;
    {
      absl::MutexLock lock(&stats.mu);
      open = stats.first_seen;
    }
    line("| idle streams | figure |");
    line("| --- | --- |");
    line(absl::StrFormat("| open WatchJob streams (each got its first event) | %d |", open));
    line(absl::StrFormat("| server RSS before / after | %.1f MB / %.1f MB |", before_kb / 1024.0,
                         after_kb / 1024.0));
    line(absl::StrFormat("| server memory per idle stream | %.1f KB |",
                         static_cast<double>(after_kb - before_kb) / std::max(open, 1)));
    for (auto& w : watchers) w->Cancel();
    const absl::Time end = absl::Now() + absl::Seconds(30);
    for (;;) {
      {
        absl::MutexLock lock(&stats.mu);
        if (stats.done == n || absl::Now() > end) break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  server.Stop();
  std::filesystem::remove_all(data);
  return 0;
}
