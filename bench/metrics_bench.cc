// jobstream-metrics-bench: what metrics and tracing cost on the hot paths. Rounds alternate
// a server with --metrics_listen=off and no --otlp_endpoint, and one serving /metrics
// scraped every second (as Prometheus would) and exporting every job's spans to an OTLP
// receiver in this process (which takes the bytes without parsing them: see SpanSink); each on a fresh data dir: Submit/s (64 durable Submits in
// flight) and end to end jobs/s (Submit -> LeaseJob -> CompleteJob, 8 workers taking 16
// jobs a lease, at most 4,096 waiting), and the server's CPU time per Submit and per job
// end to end. Prints each round, then each figure's median per mode and on / off.
//
// --sample_ratio passes --otlp_sample_ratio to the "on" server (1: every job's spans).
//
//   build/bench/jobstream-metrics-bench [--rounds=5] [--duration=4s] [--sample_ratio=1]
//                                       [--server_bin=PATH]
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "grpcpp/generic/async_generic_service.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/http_get.h"

ABSL_FLAG(int, rounds, 5, "rounds; each runs metrics off, then on");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(4), "length of each measured phase");
ABSL_FLAG(double, sample_ratio, 1.0, "--otlp_sample_ratio of the server with tracing on");
ABSL_FLAG(std::string, server_bin, "", "jobstream-server (default: ../server/ beside this binary)");

namespace {

using jobstream::bench::Channels;
using jobstream::bench::Child;
using jobstream::v1::Job;
using jobstream::v1::JobService;
using jobstream::v1::WorkerService;

constexpr char kType[] = "bench.work";

// An OTLP/gRPC receiver that takes each Export's bytes without parsing them and answers
// an empty ExportTraceServiceResponse: a collector runs on another machine, and what it
// spends parsing is not the server's cost (parsed here, on the bench's 2 cores, it was
// counted against the server's throughput). The spans are counted by the server's own
// jobstream_spans_exported_total, which counts only what the receiver accepted.
class SpanSink final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reactor(SpanSink* sink) : sink_(sink) { StartRead(&request_); }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        sink_->bytes += static_cast<int64_t>(request_.Length());
        grpc::Slice empty("");
        response_ = grpc::ByteBuffer(&empty, 1);
        StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      SpanSink* const sink_;
      grpc::ByteBuffer request_, response_;
    };
    return new Reactor(this);
  }
  std::atomic<int64_t> bytes{0};
};

// A counter's value in Prometheus text (0 if it is not there).
int64_t MetricValue(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::atoll(text.c_str() + at + name.size() + 2);
}

struct Figures {
  double submits = 0;     // Submit/s
  double end_to_end = 0;  // jobs completed/s
  int scrapes = 0;
  size_t scrape_bytes = 0;
  int64_t spans = 0;
  double submit_cpu_us = 0;  // the server's CPU (user + system) per Submit
  double job_cpu_us = 0;     // ... per job end to end, spans sent included
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

Figures Round(const std::string& bin, const std::string& dir, bool metrics,
              const std::string& sink_address, SpanSink& sink) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"types": [{"name": ")" << kType
                                      << R"(", "external": {"leaseDuration": "60s"}}]})";
  const int port = jobstream::testing::FreePort();
  Child server = jobstream::bench::Spawn(
      {bin, "--listen=127.0.0.1:0", "--log=false", "--data_dir=" + dir + "/data",
       "--config=" + dir + "/config.json",
       metrics ? absl::StrCat("--metrics_listen=127.0.0.1:", port) : "--metrics_listen=off",
       metrics ? "--otlp_endpoint=" + sink_address : "--otlp_endpoint=",
       absl::StrCat("--otlp_sample_ratio=", absl::GetFlag(FLAGS_sample_ratio))});
  Figures f;
  std::atomic<bool> stop_scraping{false};
  std::thread scraper;
  if (metrics) {
    scraper = std::thread([&] {
      while (!stop_scraping) {
        jobstream::testing::HttpReply r = jobstream::testing::HttpGet(port, "/metrics");
        if (r.status != 200) {
          std::cerr << "a scrape failed: " << r.status << "\n";
          std::exit(1);
        }
        ++f.scrapes;
        f.scrape_bytes = r.body.size();
        f.spans = MetricValue(r.body, "jobstream_spans_exported_total");
        for (int i = 0; i < 20 && !stop_scraping; ++i) absl::SleepFor(absl::Milliseconds(50));
      }
    });
  }
  auto channels = Channels(server.address, 8);
  using jobstream::bench::CpuSeconds;
  const double cpu_start = CpuSeconds(server.pid);
  jobstream::bench::Load submits = jobstream::bench::ClosedLoop(
      64, absl::GetFlag(FLAGS_duration), jobstream::bench::SubmitCalls(channels));
  if (submits.errors > 0) std::cerr << "Submit errors: " << submits.first_error << "\n";
  f.submits = submits.rate();
  const double cpu_submitted = CpuSeconds(server.pid);
  f.submit_cpu_us = (cpu_submitted - cpu_start) * 1e6 / static_cast<double>(submits.ok);
  const jobstream::bench::EndToEndRates e2e =
      jobstream::bench::EndToEnd(channels, kType, 8, 16, absl::GetFlag(FLAGS_duration));
  f.end_to_end = e2e.completed;
  // Throughput on 2 cores shared with the load swings from round to round; the server's CPU
  // per job is the steadier measure of what metrics and spans add. The exporter sends once
  // a second: after 1.5 s every span of the phase has gone.
  absl::SleepFor(absl::Milliseconds(1500));
  f.job_cpu_us = (CpuSeconds(server.pid) - cpu_submitted) * 1e6 /
                 static_cast<double>(std::max<int64_t>(1, e2e.all_completed));
  stop_scraping = true;
  if (scraper.joinable()) scraper.join();
  server.Stop();
  std::filesystem::remove_all(dir);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string bin = jobstream::bench::BinDir(argv[0], absl::GetFlag(FLAGS_server_bin)) +
                          "/server/jobstream-server";
  const std::string dir = std::filesystem::temp_directory_path() / "jobstream-metrics-bench";
  SpanSink sink;
  int sink_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &sink_port);
  builder.RegisterCallbackGenericService(&sink);
  std::unique_ptr<grpc::Server> sink_server = builder.BuildAndStart();
  const std::string sink_address = absl::StrCat("127.0.0.1:", sink_port);
  std::vector<double> submits[2], end_to_end[2], submit_cpu[2], job_cpu[2];
  std::cout << "| round | metrics and traces | Submit/s | end-to-end jobs/s | server CPU µs a "
               "Submit | server CPU µs a job end to end | scrapes (bytes each) | spans exported "
               "(by the last scrape) |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (int r = 1; r <= absl::GetFlag(FLAGS_rounds); ++r) {
    for (bool on : {false, true}) {
      const Figures f = Round(bin, dir, on, sink_address, sink);
      submits[on].push_back(f.submits);
      end_to_end[on].push_back(f.end_to_end);
      submit_cpu[on].push_back(f.submit_cpu_us);
      job_cpu[on].push_back(f.job_cpu_us);
      std::cout << absl::StrFormat("| %d | %s | %.0f | %.0f | %.1f | %.1f | %s | %s |\n", r,
                                   on ? "on" : "off", f.submits, f.end_to_end, f.submit_cpu_us,
                                   f.job_cpu_us,
                                   on ? absl::StrCat(f.scrapes, " (", f.scrape_bytes, ")") : "–",
                                   on ? absl::StrCat(f.spans) : "–")
                << std::flush;
    }
  }
  sink_server->Shutdown();
  std::cout << "\n| median | off | metrics scraped every second, spans to OTLP | on / off |\n"
               "| --- | --- | --- | --- |\n";
  for (auto [name, v] : {std::pair{"Submit/s", submits}, std::pair{"end-to-end jobs/s", end_to_end},
                         std::pair{"server CPU µs a Submit", submit_cpu},
                         std::pair{"server CPU µs a job end to end", job_cpu}}) {
    const double off = Median(v[0]), on = Median(v[1]);
    std::cout << absl::StrFormat("| %s | %.1f | %.1f | %.3f |\n", name, off, on, on / off);
  }
  return 0;
}
