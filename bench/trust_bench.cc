// jobstream-trust-bench: what tokens, TLS and request logs cost, measured in one run
// against the open plaintext server: durable Submit at 64 in flight, and PROGRESS events
// delivered to 1,000 watchers of one job. Certificates are made with openssl at run time.
//
//   build/bench/jobstream-trust-bench [--duration=5s] [--watchers=1000]
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "client/job_client.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.grpc.pb.h"

ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "length of each Submit phase");
ABSL_FLAG(int, watchers, 1000, "watchers of the fan-out phase");
ABSL_FLAG(int, event_rate, 100, "PROGRESS events per second of the watched job");
ABSL_FLAG(absl::Duration, event_duration, absl::Seconds(5), "how long the watched job reports");

namespace {

using jobstream::bench::Child;
using jobstream::bench::ClosedLoop;
using jobstream::bench::Load;
using jobstream::bench::Percentile;
using jobstream::bench::Spawn;
using jobstream::bench::SubmitCalls;
using jobstream::bench::Channels;
using jobstream::bench::Watcher;
using jobstream::v1::Job;
using jobstream::v1::JobEvent;
using jobstream::v1::JobService;

constexpr char kToken[] = "bench-token-0123456789abcdef";

struct Mode {
  std::string name;
  bool auth = false;
  bool tls = false;
  bool logs = false;
};

struct Result {
  double submits = 0, submit_p50 = 0, submit_p99 = 0;
  double events = 0, event_p50 = 0, event_p99 = 0;
  int finished = 0;
};

// The authorization metadata of a mode's calls; empty: none.
std::string AuthorizationOf(const Mode& mode) {
  return mode.auth ? std::string("Bearer ") + kToken : "";
}

Result Measure(const std::string& server_bin, const Mode& mode, const std::string& dir) {
  const std::string data = dir + "/data-" + mode.name;
  std::vector<std::string> argv = {server_bin, "--listen=127.0.0.1:0", "--data_dir=" + data,
                                   "--max_submits_per_second=0"};
  if (!mode.logs) argv.push_back("--log=false");
  if (mode.auth) argv.push_back("--auth_tokens=" + dir + "/tokens.json");
  if (mode.tls) {
    argv.push_back("--tls_cert=" + dir + "/server.pem");
    argv.push_back("--tls_key=" + dir + "/server.key");
  }
  if (mode.logs) argv.push_back("--log_format=json");
  Child server = Spawn(argv);
  Result result;
  jobstream::client::ChannelOptions options;
  if (mode.tls) options.ca_file = dir + "/ca.pem";
  auto credentials = jobstream::client::JobClient::ChannelCredentials(options);
  if (!credentials.ok()) abort();
  auto channels = Channels(server.address, 8, *credentials);
  std::vector<std::unique_ptr<JobService::Stub>> stubs;
  for (auto& c : channels) stubs.push_back(JobService::NewStub(c));

  // Durable Submit, 64 in flight.
  const std::vector<std::shared_ptr<grpc::Channel>> submit_channels(channels.begin(),
                                                                    channels.begin() + 4);
  Load load = ClosedLoop(64, absl::GetFlag(FLAGS_duration),
                         SubmitCalls(submit_channels, AuthorizationOf(mode)));
  if (load.errors > 0) std::cerr << mode.name << ": submit errors: " << load.first_error << "\n";
  result.submits = load.rate();
  result.submit_p50 = load.percentile(0.5) / 1000;
  result.submit_p99 = load.percentile(0.99) / 1000;

  // Fan-out: one job reporting event_rate PROGRESS a second to every watcher.
  const int n = absl::GetFlag(FLAGS_watchers);
  const absl::Duration span = absl::GetFlag(FLAGS_event_duration);
  const int ticks = static_cast<int>(absl::GetFlag(FLAGS_event_rate) * absl::ToDoubleSeconds(span));
  jobstream::v1::SubmitRequest job_request;
  job_request.set_type("demo.steps");
  auto& fields = *job_request.mutable_params()->mutable_fields();
  fields["steps"].mutable_list_value()->add_values()->set_string_value("report");
  fields["step_ms"].set_number_value(absl::ToInt64Milliseconds(span));
  fields["ticks"].set_number_value(ticks);
  job_request.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Seconds(3)));
  grpc::ClientContext ctx;
  if (mode.auth) ctx.AddMetadata("authorization", AuthorizationOf(mode));
  Job job;
  if (!stubs[0]->Submit(&ctx, job_request, &job).ok()) abort();
  Watcher::Stats stats;
  jobstream::bench::WatchToEnd(stubs, job.id(), n, span + absl::Seconds(30), &stats,
                               AuthorizationOf(mode));
  {
    absl::MutexLock lock(&stats.mu);
    result.events = stats.progress / absl::ToDoubleSeconds(span);
    result.event_p50 = Percentile(stats.latency_us, 0.5) / 1000;
    result.event_p99 = Percentile(stats.latency_us, 0.99) / 1000;
    result.finished = stats.done;
  }
  server.Stop();
  std::filesystem::remove_all(data);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const std::string server_bin =
      (std::filesystem::path(argv[0]).parent_path() / "../server/jobstream-server").string();
  const std::string dir = std::filesystem::temp_directory_path() / "jobstream-trust-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string openssl = absl::StrCat(
      "cd ", dir, " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem ",
      "-days 1 -subj /CN=bench-ca 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1' > ext && ",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=x ",
      "2>/dev/null && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key ",
      "-CAcreateserial -days 1 -out server.pem -extfile ext 2>/dev/null");
  if (system(openssl.c_str()) != 0) {
    std::cerr << "openssl failed\n";
    return 1;
  }
  jobstream::v1::Sha256 digest;
  digest.Update(kToken);
  std::ofstream(dir + "/tokens.json")
      << R"({"tokens": [{"sha256": ")" << digest.HexDigest()
      << R"(", "name": "bench", "tenant": "bench", "roles": ["submit", "read"]}]})";

  const std::vector<Mode> modes = {{"open", false, false, false},
                                   {"tokens", true, false, false},
                                   {"TLS", false, true, false},
                                   {"tokens + TLS", true, true, false},
                                   {"open + JSON logs", false, false, true}};
  std::vector<Result> results;
  for (const Mode& mode : modes) results.push_back(Measure(server_bin, mode, dir));
  std::filesystem::remove_all(dir);

  std::cout << absl::StrFormat(
      "| server | Submit/s (64 in flight) | p50 / p99 | vs open | PROGRESS events/s to %d "
      "watchers | commit→receive p50 / p99 | vs open |\n",
      absl::GetFlag(FLAGS_watchers));
  std::cout << "| --- | --- | --- | --- | --- | --- | --- |\n";
  for (size_t i = 0; i < modes.size(); ++i) {
    const Result& r = results[i];
    std::cout << absl::StrFormat(
        "| %s | %.0f | %.2f / %.2f ms | %+.1f%% | %.0f (%d finished) | %.2f / %.2f ms | %+.1f%% |\n",
        modes[i].name, r.submits, r.submit_p50, r.submit_p99,
        100 * (r.submits / results[0].submits - 1), r.events, r.finished, r.event_p50,
        r.event_p99, 100 * (r.events / results[0].events - 1));
  }
  return 0;
}
