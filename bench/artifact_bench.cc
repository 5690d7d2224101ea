// jobstream-artifact-bench: artifact bytes through a real server and gateway on loopback,
// next to the ceilings measured in the same run. Prints a Markdown report
// (bench/RESULTS.md):
//   - ceilings: `dd ... conv=fsync` to the data dir's disk, and a loopback TCP copy;
//   - upload (WorkerService.UploadArtifact, 1 MiB messages, finish_write to committed),
//     download (JobService.GetArtifact) and download through the gateway (HTTP GET);
//   - the server's and gateway's peak RSS for each size, to show it does not grow with it.
//
//   build/bench/jobstream-artifact-bench [--sizes_mib=64,512]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/process.h"

ABSL_FLAG(std::vector<std::string>, sizes_mib, std::vector<std::string>({"64", "512"}),
          "artifact sizes, MiB");

namespace {

using jobstream::bench::Child;
using jobstream::bench::PeakRssKb;
using jobstream::bench::Spawn;

constexpr size_t kMiB = 1 << 20;

void Line(const std::string& s) { std::cout << s << std::endl; }
double MBps(int64_t bytes, absl::Duration d) { return bytes / 1e6 / absl::ToDoubleSeconds(d); }

// dd of `mib` MiB to `dir` with fsync before it reports: the disk's synced write rate.
double DiskCeiling(const std::string& dir, int mib) {
  const std::string file = dir + "/dd.tmp";
  const absl::Time start = absl::Now();
  auto [code, out] = jobstream::testing::RunCommand(
      absl::StrCat("dd if=/dev/zero of=", file, " bs=1M count=", mib, " conv=fsync 2>&1"));
  const absl::Duration took = absl::Now() - start;
  std::filesystem::remove(file);
  if (code != 0) Line("dd failed: " + out);
  return MBps(int64_t{mib} * kMiB, took);
}

// One TCP connection on 127.0.0.1: 1 MiB writes on one side, reads to the end on the other.
double LoopbackCeiling(int mib) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  listen(listener, 1);
  int64_t received = 0;
  std::thread reader([&] {
    const int fd = accept(listener, nullptr, nullptr);
    std::string buffer(kMiB, '\0');
    for (ssize_t n; (n = read(fd, buffer.data(), buffer.size())) > 0;) received += n;
    close(fd);
  });
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const std::string chunk(kMiB, 'x');
  const absl::Time start = absl::Now();
  for (int i = 0; i < mib; ++i) {
    for (size_t off = 0; off < chunk.size();) {
      const ssize_t n = write(fd, chunk.data() + off, chunk.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  }
  close(fd);
  reader.join();
  const absl::Duration took = absl::Now() - start;
  close(listener);
  return MBps(received, took);
}

// GET of `path` from the gateway over one connection; the body's bytes are counted.
int64_t HttpGet(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  int port = 0;
  (void)absl::SimpleAtoi(address.substr(colon + 1), &port);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", address, "\r\nConnection: close\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string buffer(kMiB, '\0');
  int64_t total = 0;
  for (ssize_t n; (n = read(fd, buffer.data(), buffer.size())) > 0;) total += n;
  close(fd);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::filesystem::path build =
      std::filesystem::canonical("/proc/self/exe").parent_path().parent_path();
  const std::string work = std::filesystem::temp_directory_path() / "jobstream-artifact-bench";
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  std::ofstream(work + "/config.json")
      << R"({"types": [{"name": "bench.files", "external": {"leaseDuration": "300s"}}]})";

  Line(absl::StrFormat("Run on %s, %d cores.",
                       absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone()),
                       std::thread::hardware_concurrency()));
  Line("");
  Line("| size | dd conv=fsync | loopback copy | upload (gRPC) | download (gRPC) | "
       "download (gateway) | server peak RSS (after upload / all) | gateway peak RSS |");
  Line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const std::string& size_text : absl::GetFlag(FLAGS_sizes_mib)) {
    int mib = 0;
    if (!absl::SimpleAtoi(size_text, &mib) || mib < 1) {
      std::cerr << "bad size " << size_text << "\n";
      return 2;
    }
    const int64_t bytes = int64_t{mib} * kMiB;
    const std::string data = absl::StrCat(work, "/data-", mib);
    Child server = Spawn({build / "server/jobstream-server", "--listen=127.0.0.1:0",
                          "--data_dir=" + data, "--config=" + work + "/config.json",
                          "--max_artifact_bytes=" + std::to_string(bytes)});
    Child gateway = Spawn({build / "gateway/jobstream-gateway", "--listen=127.0.0.1:0",
                           "--server=" + server.address});
    const double disk = DiskCeiling(data, mib);
    const double loopback = LoopbackCeiling(mib);

    auto channel = grpc::CreateChannel(server.address, grpc::InsecureChannelCredentials());
    auto jobs = jobstream::v1::JobService::NewStub(channel);
    auto workers = jobstream::v1::WorkerService::NewStub(channel);
    std::string job_id, lease_id;
    {
      grpc::ClientContext ctx;
      jobstream::v1::SubmitRequest submit;
      submit.set_type("bench.files");
      jobstream::v1::Job job;
      jobs->Submit(&ctx, submit, &job);
      grpc::ClientContext lctx;
      jobstream::v1::LeaseJobRequest lease;
      lease.add_types("bench.files");
      lease.mutable_wait()->set_seconds(5);
      jobstream::v1::LeaseJobResponse leased;
      workers->LeaseJob(&lctx, lease, &leased);
      job_id = job.id();
      lease_id = leased.jobs(0).lease_id();
    }
    // Upload: 1 MiB messages, from the first byte to the committed artifact.
    absl::Duration upload;
    {
      grpc::ClientContext ctx;
      jobstream::v1::Artifact artifact;
      const absl::Time start = absl::Now();
      auto writer = workers->UploadArtifact(&ctx, &artifact);
      jobstream::v1::UploadArtifactRequest message;
      message.mutable_header()->set_lease_id(lease_id);
      message.mutable_header()->set_name("bench.bin");
      const std::string chunk(kMiB, 'b');
      for (int i = 0; i < mib; ++i) {
        message.set_data(chunk);
        if (i + 1 == mib) message.set_finish_write(true);
        writer->Write(message);
        message.clear_header();
      }
      writer->WritesDone();
      grpc::Status s = writer->Finish();
      upload = absl::Now() - start;
      if (!s.ok()) Line("upload failed: " + s.error_message());
    }
    const int64_t peak_after_upload = PeakRssKb(server.pid);
    absl::Duration download;
    {
      grpc::ClientContext ctx;
      jobstream::v1::GetArtifactRequest request;
      request.set_job_id(job_id);
      request.set_name("bench.bin");
      const absl::Time start = absl::Now();
      auto reader = jobs->GetArtifact(&ctx, request);
      jobstream::v1::GetArtifactResponse message;
      int64_t got = 0;
      while (reader->Read(&message)) got += static_cast<int64_t>(message.data().size());
      reader->Finish();
      download = absl::Now() - start;
      if (got != bytes) Line(absl::StrCat("download got ", got, " bytes"));
    }
    const absl::Time start = absl::Now();
    const int64_t http_bytes =
        HttpGet(gateway.address, absl::StrCat("/v1/jobs/", job_id, "/artifacts/bench.bin"));
    const absl::Duration http = absl::Now() - start;
    if (http_bytes < bytes) Line(absl::StrCat("gateway download got ", http_bytes, " bytes"));
    const int64_t server_peak = PeakRssKb(server.pid);
    const int64_t gateway_peak = PeakRssKb(gateway.pid);
    Line(absl::StrFormat(
        "| %d MiB | %.0f MB/s | %.0f MB/s | %.0f MB/s (%.2f of dd) | %.0f MB/s | %.0f MB/s "
        "(%.2f of loopback) | %d / %d MiB | %d MiB |",
        mib, disk, loopback, MBps(bytes, upload), MBps(bytes, upload) / disk,
        MBps(bytes, download), MBps(bytes, http), MBps(bytes, http) / loopback,
        peak_after_upload / 1024, server_peak / 1024, gateway_peak / 1024));
    gateway.Stop();
    server.Stop();
    std::filesystem::remove_all(data);
  }
  std::filesystem::remove_all(work);
  return 0;
}
