// Artifacts on the real binaries: attached by all three producers (a built-in handler, an
// exec program's output directory, a worker's UploadArtifact stream), read back whole and
// in slices, fenced by the lease, refused past the limits or with bad names, never half
// visible across a kill -9, streamed at 200 MiB with the server's memory flat, and gone
// from the disk when the job is.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "server/jobs/artifact_upload.h"
#include "server/jobs/handlers/demo_steps.h"
#include "tests/support/job_helpers.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

// clang says ASan is on through __has_feature; GCC through __SANITIZE_ADDRESS__.
#if defined(__SANITIZE_ADDRESS__)
#define JOBSTREAM_HAS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JOBSTREAM_HAS_ASAN 1
#endif
#endif
#ifndef JOBSTREAM_HAS_ASAN
#define JOBSTREAM_HAS_ASAN 0
#endif

namespace jobstream {
namespace {

using client::JobClient;
using jobs::DemoArtifactByte;
using jobs::kArtifactChunkBytes;
using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

constexpr int64_t kChunk = static_cast<int64_t>(kArtifactChunkBytes);
constexpr bool kAsan = JOBSTREAM_HAS_ASAN;
// The big artifact: 200 MiB, where the server's peak RSS is measured against it. Under ASan
// RSS shows the quarantine, not the server, so nothing is measured there, and the same code
// (every chunk, message and write) is checked for memory errors on 24 MiB, a tenth the time.
constexpr int64_t kBig = (kAsan ? int64_t{24} : int64_t{200}) << 20;
// A file of several chunks and gRPC messages with a ragged end, for the work command.
constexpr int64_t kMovie = (int64_t{8} << 20) + 5;

std::string DemoBytes(int64_t n, int64_t from = 0) {
  std::string s(static_cast<size_t>(n), '\0');
  for (int64_t i = 0; i < n; ++i) s[i] = DemoArtifactByte(from + i);
  return s;
}

std::string Sha(absl::string_view data) {
  v1::Sha256 sha;
  sha.Update(data);
  return sha.HexDigest();
}

// The peak resident memory of a process so far (VmHWM), in bytes.
int64_t PeakRss(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      int64_t kb = 0;
      std::string digits;
      for (char c : line) if (c >= '0' && c <= '9') digits.push_back(c);
      EXPECT_TRUE(absl::SimpleAtoi(digits, &kb));
      return kb * 1024;
    }
  }
  ADD_FAILURE() << "no VmHWM for " << pid;
  return 0;
}

// The bytes of the files under `dir`; a file RocksDB removes while they are counted counts 0.
int64_t DirBytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, error)) {
    const uintmax_t size = entry.file_size(error);
    if (!error && entry.is_regular_file(error)) total += static_cast<int64_t>(size);
  }
  return total;
}

struct Read {
  grpc::Status status;
  v1::Artifact artifact;
  std::string data;
  int messages = 0;
};

struct UploadOptions {
  size_t piece = 64 << 10;
  bool finish = true;        // send finish_write on the last message
  bool header = true;        // send the header at all
  std::optional<int64_t> size;
  std::string sha256;
  std::string content_type;
};

// Runs on each store (store_test.h); RocksArtifactTest only on RocksDB.
class ArtifactTest : public testing::StoreTest {
 protected:
  void SetUp() override {
    testing::StoreTest::SetUp();
    big_file_ = dir_.sub("big.src");  // written by the tests that use it: BigFile()
    mark_file_ = dir_.sub("outdir.txt");
    script_ = testing::WriteScript(dir_.sub("outputs.sh"), R"sh(read params
out="$JOBSTREAM_OUTPUT_DIR"
echo "$out" > "$MARK_FILE"
: > "$out/empty.txt"
printf x > "$out/one.bin"
head -c 262144 /dev/zero > "$out/chunk.bin"
printf 'PNG' > "$out/plot.png"
mkdir "$out/sub" && : > "$out/sub/inner.txt"
ln -s /etc/passwd "$out/link"
case "$params" in *big*) cp "$BIG_FILE" "$out/big.bin";; esac
case "$params" in *badname*) : > "$out/$(printf 'bad\001name')";; esac
echo '{"result": "written"}'
)sh");
  }

  // The worker's lease outlasts the slowest upload here (200 MiB under ASan on two busy
  // cores took over a minute): these tests do not heartbeat while they upload.
  void StartServer(std::vector<std::string> flags = {}) {
    const std::string config = dir_.sub("config.json");
    std::ofstream(config) << R"({"types": [
      {"name": "render", "exec": {"argv": [")" << script_ << R"("],
        "env": {"MARK_FILE": ")" << mark_file_ << R"(", "BIG_FILE": ")" << big_file_ << R"("}},
        "maxAttempts": 1},
      {"name": "remote", "external": {"leaseDuration": "600s"}}]})";
    flags.push_back("--config=" + config);
    for (std::string& f : StoreFlags()) flags.push_back(std::move(f));
    flags_ = flags;
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    Connect();
  }
  void Restart(int signal) {
    const std::string address = server_->address();
    server_->Stop(signal);
    std::vector<std::string> flags = flags_;
    flags.push_back("--listen=" + address);
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    Connect();
  }
  void Connect() {
    client_ = std::make_unique<JobClient>(server_->Channel());
    jobs_ = v1::JobService::NewStub(server_->Channel());
    workers_ = v1::WorkerService::NewStub(server_->Channel());
  }

  Job Submit(const std::string& type, const std::string& params = "{}") {
    v1::SubmitRequest request;
    request.set_type(type);
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(params, request.mutable_params()).ok());
    auto job = client_->Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }

  // A demo.steps job that attaches `bytes` of the demo pattern as `name`, to its end.
  Job RunDemo(int64_t bytes, const std::string& name = "out.bin") {
    Job job = Submit("demo.steps", absl::StrCat(R"({"steps": ["a"], "step_ms": 0, "ticks": 0,
        "artifact": {"name": ")", name, R"(", "bytes": )", bytes, "}}"));
    auto end = client_->Watch(job.id(), 0, [](const JobEvent&) {});
    EXPECT_TRUE(end.ok()) << end.status();
    return end.ok() ? *end : Job();
  }

  v1::LeasedJob LeaseOne() {
    v1::LeaseJobRequest request;
    request.add_types("remote");
    request.set_worker_id("test");
    request.mutable_wait()->set_seconds(5);
    v1::LeaseJobResponse response;
    grpc::ClientContext ctx;
    grpc::Status s = workers_->LeaseJob(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.jobs_size(), 1);
    return response.jobs_size() == 1 ? response.jobs(0) : v1::LeasedJob();
  }

  grpc::Status Upload(const std::string& lease_id, const std::string& name,
                      absl::string_view data, v1::Artifact* artifact = nullptr,
                      UploadOptions options = {}) {
    grpc::ClientContext ctx;
    v1::Artifact response;
    auto writer = workers_->UploadArtifact(&ctx, &response);
    v1::UploadArtifactRequest message;
    if (options.header) {
      message.mutable_header()->set_lease_id(lease_id);
      message.mutable_header()->set_name(name);
      message.mutable_header()->set_content_type(options.content_type);
      if (options.size) message.mutable_header()->set_size(*options.size);
      message.mutable_header()->set_sha256(options.sha256);
    }
    size_t at = 0;
    do {
      const size_t n = std::min(options.piece, data.size() - at);
      message.set_data(std::string(data.substr(at, n)));
      at += n;
      if (at == data.size() && options.finish) message.set_finish_write(true);
      if (!writer->Write(message)) break;
      message.Clear();
    } while (at < data.size());
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (artifact != nullptr) *artifact = response;
    return status;
  }

  Read ReadArtifact(const std::string& job_id, const std::string& name, int64_t offset = 0,
                    int64_t limit = 0) {
    grpc::ClientContext ctx;
    v1::GetArtifactRequest request;
    request.set_job_id(job_id);
    request.set_name(name);
    request.set_offset(offset);
    request.set_limit(limit);
    auto reader = jobs_->GetArtifact(&ctx, request);
    Read read;
    v1::GetArtifactResponse message;
    while (reader->Read(&message)) {
      if (read.messages++ == 0) {
        EXPECT_TRUE(message.has_artifact());
        read.artifact = message.artifact();
      }
      EXPECT_EQ(message.offset(), offset + static_cast<int64_t>(read.data.size()));
      read.data += message.data();
    }
    read.status = reader->Finish();
    return read;
  }

  // The file the tests of a big artifact start from (kBig bytes, unless said), written on
  // first use.
  const std::string& BigFile(int64_t size = kBig) {
    if (!std::filesystem::exists(big_file_)) {
      std::ofstream(big_file_, std::ios::binary) << DemoBytes(size);
    }
    return big_file_;
  }

  Job Status(const std::string& id) {
    auto job = client_->GetStatus(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }

  testing::TempDir dir_;
  std::string big_file_, mark_file_, script_;
  std::vector<std::string> flags_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

JOBSTREAM_BOTH_STORES(ArtifactTest);

// What is measured on the embedded store: its memory and its disk.
class RocksArtifactTest : public ArtifactTest {};

TEST_P(ArtifactTest, BuiltInHandlerAttachesEveryEdgeSizeAndReadsBackInSlices) {
  StartServer();
  for (int64_t size : {int64_t{0}, int64_t{1}, kChunk, kChunk + 1, 3 * kChunk + 5}) {
    SCOPED_TRACE(absl::StrCat("size ", size));
    Job job = Submit("demo.steps", absl::StrCat(R"({"steps": ["a"], "step_ms": 0, "ticks": 0,
        "artifact": {"name": "out.bin", "bytes": )", size, R"(, "content_type": "video/mp4"}})"));
    std::vector<JobEvent> events = testing::FollowJob(*client_, job.id());
    ASSERT_GE(events.size(), 2u);
    // The artifact is announced, whole, before the job ends.
    const JobEvent& announced = events[events.size() - 2];
    ASSERT_EQ(announced.type(), JobEvent::ARTIFACT);
    EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED);
    const std::string expected = DemoBytes(size);
    EXPECT_EQ(announced.artifact().name(), "out.bin");
    EXPECT_EQ(announced.artifact().size(), size);
    EXPECT_EQ(announced.artifact().content_type(), "video/mp4");
    EXPECT_EQ(announced.artifact().sha256(), Sha(expected));
    EXPECT_EQ(announced.artifact().attempt(), 1);
    ASSERT_EQ(announced.status().artifacts_size(), 1);
    ASSERT_EQ(events.back().status().artifacts_size(), 1);

    Read whole = ReadArtifact(job.id(), "out.bin");
    ASSERT_TRUE(whole.status.ok()) << whole.status.error_message();
    EXPECT_EQ(whole.data.size(), expected.size());
    EXPECT_TRUE(whole.data == expected);
    EXPECT_EQ(whole.artifact.sha256(), Sha(expected));
    // Data comes in messages of up to 1 MiB after the description.
    EXPECT_EQ(whole.messages, 1 + static_cast<int>((size + (1 << 20) - 1) >> 20));

    if (size > 10) {
      const int64_t from = size / 3, n = size / 2;
      Read slice = ReadArtifact(job.id(), "out.bin", from, n);
      ASSERT_TRUE(slice.status.ok()) << slice.status.error_message();
      EXPECT_TRUE(slice.data == expected.substr(from, n));
      Read tail = ReadArtifact(job.id(), "out.bin", size - 7);
      EXPECT_TRUE(tail.data == expected.substr(size - 7));
    }
    Read at_end = ReadArtifact(job.id(), "out.bin", size);
    EXPECT_TRUE(at_end.status.ok());
    EXPECT_EQ(at_end.messages, 1);  // the description only
    EXPECT_EQ(ReadArtifact(job.id(), "out.bin", size + 1).status.error_code(),
              grpc::StatusCode::OUT_OF_RANGE);
  }
  Job job = Status(RunDemo(10).id());
  EXPECT_EQ(ReadArtifact(job.id(), "other.bin").status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ReadArtifact(job.id(), "../out.bin").status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReadArtifact(job.id(), "out.bin", 0, -1).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReadArtifact("01m8488yd72g1c1chq6xp84ke3", "out.bin").status.error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_P(ArtifactTest, WorkerUploadsAreFencedCheckedAndReplaceByName) {
  StartServer();
  Job job = Submit("remote");
  v1::LeasedJob leased = LeaseOne();
  const std::string data = DemoBytes(kChunk + 1000);
  v1::Artifact artifact;
  grpc::Status s = Upload(leased.lease_id(), "report.pdf", data, &artifact);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(artifact.content_type(), "application/pdf");  // guessed from the name
  EXPECT_EQ(artifact.sha256(), Sha(data));
  EXPECT_EQ(artifact.size(), static_cast<int64_t>(data.size()));

  // Names that are not plain file names, and malformed streams: refused, nothing kept.
  for (const std::string& name :
       {std::string("a/b"), std::string(".."), std::string("x\0y", 3), std::string(1000, 'a'),
        std::string(""), std::string("back\\slash")}) {
    SCOPED_TRACE(name.substr(0, 20));
    EXPECT_EQ(Upload(leased.lease_id(), name, "x").error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  UploadOptions unfinished;
  unfinished.finish = false;
  s = Upload(leased.lease_id(), "cut.bin", data, nullptr, unfinished);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("finish_write"), std::string::npos) << s.error_message();
  UploadOptions headless;
  headless.header = false;
  EXPECT_EQ(Upload(leased.lease_id(), "x.bin", "x", nullptr, headless).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  UploadOptions wrong_size;
  wrong_size.size = 5;
  EXPECT_EQ(Upload(leased.lease_id(), "size.bin", "1234", nullptr, wrong_size).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  UploadOptions wrong_sha;
  wrong_sha.sha256 = Sha("something else");
  EXPECT_EQ(Upload(leased.lease_id(), "sha.bin", data, nullptr, wrong_sha).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  UploadOptions bad_type;
  bad_type.content_type = "not a type";
  EXPECT_EQ(Upload(leased.lease_id(), "t.bin", "x", nullptr, bad_type).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  UploadOptions big_message;
  big_message.piece = (1 << 20) + 1;
  EXPECT_EQ(Upload(leased.lease_id(), "m.bin", DemoBytes((1 << 20) + 1), nullptr, big_message)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  Job now = Status(job.id());
  ASSERT_EQ(now.artifacts_size(), 1);
  EXPECT_EQ(now.artifacts(0).name(), "report.pdf");

  // The same name again replaces it: one entry, the new bytes.
  const std::string second = DemoBytes(3 * kChunk, 17);
  UploadOptions checked;
  checked.size = static_cast<int64_t>(second.size());
  checked.sha256 = Sha(second);
  ASSERT_TRUE(Upload(leased.lease_id(), "report.pdf", second, nullptr, checked).ok());
  now = Status(job.id());
  ASSERT_EQ(now.artifacts_size(), 1);
  EXPECT_EQ(now.artifacts(0).sha256(), Sha(second));
  Read read = ReadArtifact(job.id(), "report.pdf");
  ASSERT_TRUE(read.status.ok());
  EXPECT_TRUE(read.data == second);

  // An upload whose lease is lost midway is refused at its end and never visible; one
  // with a stale lease is refused at once.
  grpc::ClientContext ctx;
  v1::Artifact ignored;
  auto writer = workers_->UploadArtifact(&ctx, &ignored);
  v1::UploadArtifactRequest first;
  first.mutable_header()->set_lease_id(leased.lease_id());
  first.mutable_header()->set_name("late.bin");
  first.set_data(DemoBytes(2 * kChunk));
  ASSERT_TRUE(writer->Write(first));
  {
    v1::ReleaseJobRequest release;
    release.set_lease_id(leased.lease_id());
    grpc::ClientContext rctx;
    Job released;
    ASSERT_TRUE(workers_->ReleaseJob(&rctx, release, &released).ok());
  }
  v1::UploadArtifactRequest last;
  last.set_data(DemoBytes(kChunk));
  last.set_finish_write(true);
  writer->Write(last);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Upload(leased.lease_id(), "stale.bin", "x").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  now = Status(job.id());
  ASSERT_EQ(now.artifacts_size(), 1);
  EXPECT_EQ(now.artifacts(0).name(), "report.pdf");
  EXPECT_EQ(ReadArtifact(job.id(), "late.bin").status.error_code(), grpc::StatusCode::NOT_FOUND);

  // The next lease sees the earlier one's artifact and may replace it.
  v1::LeasedJob again = LeaseOne();
  EXPECT_EQ(again.job().artifacts_size(), 1);
  ASSERT_TRUE(Upload(again.lease_id(), "report.pdf", "third").ok());
  EXPECT_EQ(ReadArtifact(job.id(), "report.pdf").data, "third");
}

TEST_P(ArtifactTest, LimitsRefuseAndKeepNothing) {
  StartServer({"--max_artifact_bytes=1000000", "--max_job_artifact_bytes=1500000",
               "--max_artifacts_per_job=3"});
  Job job = Submit("remote");
  v1::LeasedJob leased = LeaseOne();
  grpc::Status s = Upload(leased.lease_id(), "huge.bin", DemoBytes(1000001));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("--max_artifact_bytes"), std::string::npos) << s.error_message();
  UploadOptions announced;
  announced.size = 1000001;
  EXPECT_EQ(Upload(leased.lease_id(), "huge.bin", "x", nullptr, announced).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  ASSERT_TRUE(Upload(leased.lease_id(), "a.bin", DemoBytes(900000)).ok());
  s = Upload(leased.lease_id(), "b.bin", DemoBytes(900000));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("--max_job_artifact_bytes"), std::string::npos)
      << s.error_message();
  // Replacing a.bin does not count a.bin twice.
  ASSERT_TRUE(Upload(leased.lease_id(), "a.bin", DemoBytes(950000)).ok());
  ASSERT_TRUE(Upload(leased.lease_id(), "b.bin", "b").ok());
  ASSERT_TRUE(Upload(leased.lease_id(), "c.bin", "c").ok());
  s = Upload(leased.lease_id(), "d.bin", "d");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("--max_artifacts_per_job"), std::string::npos);
  Job now = Status(job.id());
  ASSERT_EQ(now.artifacts_size(), 3);
  EXPECT_EQ(now.artifacts(0).size(), 950000);
  EXPECT_EQ(ReadArtifact(job.id(), "huge.bin").status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(ArtifactTest, ExecProgramOutputFilesBecomeArtifactsAndTheDirectoryGoes) {
  StartServer();
  Job job = Submit("render");
  std::vector<JobEvent> events = testing::FollowJob(*client_, job.id());
  ASSERT_FALSE(events.empty());
  const Job& end = events.back().status();
  ASSERT_EQ(end.state(), Job::SUCCEEDED) << end.error().message();
  EXPECT_EQ(end.result().string_value(), "written");
  std::map<std::string, v1::Artifact> by_name;
  for (const v1::Artifact& a : end.artifacts()) by_name[a.name()] = a;
  // Regular files directly in the directory; not the subdirectory or the link.
  ASSERT_EQ(by_name.size(), 4u);
  EXPECT_EQ(by_name["empty.txt"].size(), 0);
  EXPECT_EQ(by_name["empty.txt"].content_type(), "text/plain; charset=utf-8");
  EXPECT_EQ(by_name["one.bin"].size(), 1);
  EXPECT_EQ(by_name["chunk.bin"].size(), kChunk);
  EXPECT_EQ(by_name["chunk.bin"].sha256(), Sha(std::string(kChunk, '\0')));
  EXPECT_EQ(by_name["plot.png"].content_type(), "image/png");
  int announced = 0;
  for (const JobEvent& e : events) announced += e.type() == JobEvent::ARTIFACT;
  EXPECT_EQ(announced, 4);
  EXPECT_EQ(ReadArtifact(job.id(), "one.bin").data, "x");

  // The attempt's output directory is removed once it ends.
  std::ifstream mark(mark_file_);
  std::string out_dir;
  std::getline(mark, out_dir);
  ASSERT_FALSE(out_dir.empty());
  EXPECT_FALSE(std::filesystem::exists(out_dir)) << out_dir;

  // A file whose name cannot be an artifact fails the job, not worth another attempt.
  Job bad = Submit("render", R"({"badname": true})");
  Job failed = testing::FollowJob(*client_, bad.id()).back().status();
  EXPECT_EQ(failed.state(), Job::FAILED);
  EXPECT_NE(failed.error().message().find("control character"), std::string::npos)
      << failed.error().message();
}

TEST_P(ArtifactTest, WorkCommandUploadsOutputsAndFetchChecksThem) {
  StartServer();
  const std::string script = testing::WriteScript(dir_.sub("work.sh"), absl::StrCat(R"(
cp ")", BigFile(kMovie), R"(" "$JOBSTREAM_OUTPUT_DIR/frames.mp4"
printf 'hello' > "$JOBSTREAM_OUTPUT_DIR/notes.txt"
: > "$JOBSTREAM_OUTPUT_DIR/empty.bin"
printf x > "$JOBSTREAM_OUTPUT_DIR/one.bin"
head -c 262144 /dev/zero > "$JOBSTREAM_OUTPUT_DIR/chunk.bin"
echo '{"result": {"artifact": "frames.mp4"}}'
)"));
  const pid_t worker = testing::Spawn(
      {testing::BinaryPath("client/jobstream"), "--server=" + server_->address(), "work",
       "--type=remote", "--", script},
      dir_.sub("worker.log"));
  Job job = Submit("remote");
  Job end = testing::FollowJob(*client_, job.id()).back().status();
  testing::StopProcess(worker, SIGKILL);
  ASSERT_EQ(end.state(), Job::SUCCEEDED) << end.error().message();
  std::map<std::string, v1::Artifact> by_name;
  for (const v1::Artifact& a : end.artifacts()) by_name[a.name()] = a;
  ASSERT_EQ(by_name.size(), 5u);
  EXPECT_EQ(by_name["frames.mp4"].content_type(), "video/mp4");
  EXPECT_EQ(by_name["frames.mp4"].size(), kMovie);
  EXPECT_EQ(by_name["empty.bin"].size(), 0);
  EXPECT_EQ(by_name["empty.bin"].sha256(), Sha(""));
  EXPECT_EQ(ReadArtifact(job.id(), "one.bin").data, "x");
  EXPECT_EQ(by_name["chunk.bin"].sha256(), Sha(std::string(kChunk, '\0')));

  // jobstream fetch writes the file under its name, checked against its sha256.
  const std::string jobstream = testing::BinaryPath("client/jobstream");
  auto [code, out] = testing::RunCommand(absl::StrCat(
      "cd ", dir_.path(), " && ", jobstream, " --server=", server_->address(), " fetch ",
      job.id(), " notes.txt"));
  EXPECT_EQ(code, 0) << out;
  std::ifstream notes(dir_.sub("notes.txt"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(notes), {}), "hello");
  std::tie(code, out) = testing::RunCommand(absl::StrCat(
      jobstream, " --server=", server_->address(), " fetch ", job.id(), " frames.mp4 -o ",
      dir_.sub("copy.mp4"), " --json"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find(by_name["frames.mp4"].sha256()), std::string::npos) << out;
  auto [cmp, cmp_out] = testing::RunCommand(absl::StrCat("cmp ", big_file_, " ", dir_.sub("copy.mp4")));
  EXPECT_EQ(cmp, 0) << cmp_out;
  std::tie(code, out) = testing::RunCommand(absl::StrCat(
      jobstream, " --server=", server_->address(), " fetch ", job.id(), " nothing.bin -o ",
      dir_.sub("nothing.bin"), " 2>&1"));
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("has no artifact"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir_.sub("nothing.bin.partial")));
}

TEST_P(ArtifactTest, KillNineMidUploadLeavesNoHalfArtifactAndTheRetryUploadsAgain) {
  StartServer();
  Job job = Submit("remote");
  v1::LeasedJob leased = LeaseOne();
  {
    // Several chunks in, unfinished: they are on their way to disk ahead of a commit.
    grpc::ClientContext ctx;
    v1::Artifact ignored;
    auto writer = workers_->UploadArtifact(&ctx, &ignored);
    v1::UploadArtifactRequest message;
    message.mutable_header()->set_lease_id(leased.lease_id());
    message.mutable_header()->set_name("half.bin");
    for (int i = 0; i < 12; ++i) {
      message.set_data(DemoBytes(kChunk, i * kChunk));
      ASSERT_TRUE(writer->Write(message));
      message.clear_header();
    }
    absl::SleepFor(absl::Milliseconds(300));  // the server has taken them
    Restart(SIGKILL);
    ctx.TryCancel();
    writer->Finish();
  }
  Job now = Status(job.id());
  EXPECT_EQ(now.state(), Job::RUNNING);  // the lease stands across the restart
  EXPECT_EQ(now.artifacts_size(), 0);
  EXPECT_EQ(ReadArtifact(job.id(), "half.bin").status.error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string whole = DemoBytes(12 * kChunk + 3);
  ASSERT_TRUE(Upload(leased.lease_id(), "half.bin", whole).ok());
  Read read = ReadArtifact(job.id(), "half.bin");
  ASSERT_TRUE(read.status.ok());
  EXPECT_TRUE(read.data == whole);
}

TEST_F(RocksArtifactTest, TwoHundredMebibytesFromEachProducerWithTheServersMemoryFlat) {
  StartServer();
  const int64_t rss_at_start = PeakRss(server_->pid());
  const std::string expected_sha = Sha(DemoBytes(kBig));
  BigFile();  // the exec program copies it; the worker uploads it
  // A built-in handler.
  Job demo = RunDemo(kBig, "big.bin");
  ASSERT_EQ(demo.state(), Job::SUCCEEDED) << demo.error().message();
  ASSERT_EQ(demo.artifacts_size(), 1);
  EXPECT_EQ(demo.artifacts(0).sha256(), expected_sha);
  // An exec program's output directory.
  Job exec = testing::FollowJob(*client_, Submit("render", R"({"big": true})").id()).back().status();
  ASSERT_EQ(exec.state(), Job::SUCCEEDED) << exec.error().message();
  bool found = false;
  for (const v1::Artifact& a : exec.artifacts()) {
    if (a.name() != "big.bin") continue;
    found = true;
    EXPECT_EQ(a.sha256(), expected_sha);
  }
  EXPECT_TRUE(found);
  // A worker's stream, in 1 MiB messages.
  Job remote = Submit("remote");
  v1::LeasedJob leased = LeaseOne();
  {
    std::ifstream in(big_file_, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), {});
    UploadOptions options;
    options.piece = 1 << 20;
    v1::Artifact uploaded;
    ASSERT_TRUE(Upload(leased.lease_id(), "big.bin", data, &uploaded, options).ok());
    EXPECT_EQ(uploaded.sha256(), expected_sha);
  }
  // Read back, streamed.
  {
    grpc::ClientContext ctx;
    v1::GetArtifactRequest request;
    request.set_job_id(demo.id());
    request.set_name("big.bin");
    auto reader = jobs_->GetArtifact(&ctx, request);
    v1::GetArtifactResponse message;
    v1::Sha256 sha;
    int64_t total = 0;
    while (reader->Read(&message)) {
      sha.Update(message.data());
      total += static_cast<int64_t>(message.data().size());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(total, kBig);
    EXPECT_EQ(sha.HexDigest(), expected_sha);
  }
  // 600 MiB in and 200 MiB out: the server never held an artifact whole (its memtables
  // and gRPC's buffers are bounded well below that).
  const int64_t peak = PeakRss(server_->pid());
  std::cout << "server peak RSS " << (peak >> 20) << " MiB, at start " << (rss_at_start >> 20)
            << " MiB\n";
  if (!kAsan) {  // under ASan, its quarantine of freed memory is what the RSS shows
    EXPECT_LT(peak - rss_at_start, int64_t{150} << 20)
        << "peak RSS " << (peak >> 20) << " MiB, at start " << (rss_at_start >> 20) << " MiB";
  }
}

TEST_F(RocksArtifactTest, DeleteAndRetentionGiveTheSpaceBack) {
  StartServer({"--retention=2s", "--sweep_interval=500ms"});
  const std::string data_dir = dir_.sub("data");
  const int64_t empty = DirBytes(data_dir);
  // Deleted as soon as it ends: retention (2 s) would take it first if a slow machine (the
  // sanitizer build's suite) spent that long running the second job.
  Job deleted = RunDemo(40 << 20);
  EXPECT_GT(DirBytes(data_dir) - empty, int64_t{35} << 20);
  // The moment its end is seen: the server has let go of it by then (no ABORTED).
  const absl::Status removed = client_->Delete(deleted.id());
  ASSERT_TRUE(removed.ok()) << removed;
  EXPECT_EQ(ReadArtifact(deleted.id(), "out.bin").status.error_code(), grpc::StatusCode::NOT_FOUND);
  Job expired = RunDemo(40 << 20);
  // Retention removes the other; both artifacts' space comes back once compacted.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline && DirBytes(data_dir) > empty + (int64_t{20} << 20)) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_LT(DirBytes(data_dir), empty + (int64_t{20} << 20));
  EXPECT_EQ(ReadArtifact(expired.id(), "out.bin").status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(client_->GetStatus(expired.id()).status().message().find("expired"), std::string::npos);
}

}  // namespace
}  // namespace jobstream
