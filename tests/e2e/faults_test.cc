// Failing disks, on a real filesystem: a data dir on a small tmpfs that fills up (new work
// is refused with a clear status, reads, watches and running jobs go on, nothing
// acknowledged is lost, and once space returns work is taken again without a restart),
// and a data dir that cannot be written is refused at start. Mounting needs root; where
// it is not allowed, these tests say so and skip. And a slow link: a server whose
// connection handshake takes half a second is still reached.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/job_client.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/job_helpers.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::JobClient;
using testing::DemoSteps;
using testing::ServerProcess;
using v1::Job;

constexpr int64_t kMiB = 1 << 20;

class TmpfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mnt_ = dir_.sub("mnt");
    std::filesystem::create_directory(mnt_);
    if (mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=96m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (" << strerror(errno) << "): needs root";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) umount2(mnt_.c_str(), MNT_DETACH);
  }
  static int64_t FreeBytes(const std::string& path) {
    struct statvfs fs;
    EXPECT_EQ(statvfs(path.c_str(), &fs), 0);
    return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
  }
  // Writes a file of zeros until only `leave` bytes are free.
  void FillLeaving(int64_t leave) {
    std::ofstream ballast(mnt_ + "/ballast", std::ios::binary | std::ios::app);
    const std::string block(kMiB / 4, '\0');
    while (FreeBytes(mnt_) > leave + static_cast<int64_t>(block.size())) {
      ballast.write(block.data(), static_cast<std::streamsize>(block.size()));
      ballast.flush();
      ASSERT_TRUE(ballast.good());
    }
  }

  testing::TempDir dir_;
  std::string mnt_;
  bool mounted_ = false;
};

TEST_F(TmpfsTest, AFullDiskRefusesNewWorkKeepsTheRestAndRecoversWithoutARestart) {
  const std::string data = mnt_ + "/data";
  const std::vector<std::string> flags = {"--min_free_disk_bytes=" + std::to_string(12 * kMiB)};
  auto server = std::make_unique<ServerProcess>(data, flags);
  JobClient client(JobClient::Connect(server->address()));
  std::vector<std::string> acknowledged;
  for (int i = 0; i < 20; ++i) {
    auto job = client.Submit(DemoSteps(0, 0));
    ASSERT_TRUE(job.ok()) << job.status();
    acknowledged.push_back(job->id());
  }
  // A job that runs through what follows, with a watcher.
  auto running = client.Submit(DemoSteps(4, 1000));  // about 3 s
  ASSERT_TRUE(running.ok());
  acknowledged.push_back(running->id());

  FillLeaving(6 * kMiB);  // under the 12 MiB floor
  absl::SleepFor(absl::Milliseconds(150));  // the server looks again
  auto refused = client.Submit(DemoSteps(0, 0));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("--min_free_disk_bytes"), std::string::npos)
      << refused.status();
  // Reads and watches go on; the running job finishes, every event in order.
  for (const std::string& id : acknowledged) EXPECT_TRUE(client.GetStatus(id).ok()) << id;
  std::vector<v1::JobEvent> events = testing::FollowJob(client, running->id());
  EXPECT_EQ(events.back().type(), v1::JobEvent::SUCCEEDED);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].sequence(), int64_t(i + 1));

  // Space returns: new work is taken again, by the same process.
  std::filesystem::remove(mnt_ + "/ballast");
  absl::SleepFor(absl::Milliseconds(150));
  auto after = client.Submit(DemoSteps(0, 0));
  ASSERT_TRUE(after.ok()) << after.status();
  acknowledged.push_back(after->id());
  EXPECT_EQ(testing::FollowJob(client, after->id()).back().type(), v1::JobEvent::SUCCEEDED);

  // And nothing acknowledged is lost across a restart.
  EXPECT_EQ(server->Stop(), 0);
  server = std::make_unique<ServerProcess>(data, flags);
  JobClient again(JobClient::Connect(server->address()));
  for (const std::string& id : acknowledged) {
    auto job = again.GetStatus(id);
    ASSERT_TRUE(job.ok()) << id << ": " << job.status();
    EXPECT_EQ(job->state(), Job::SUCCEEDED) << id;
  }
}

// With no floor, the disk fills under RocksDB itself: a write fails, and the server holds
// state the store does not have. It refuses every change until the store takes writes
// again, reads it back, and goes on — the job that was running runs again, without
// spending an attempt, and its watcher sees every event once, in order.
TEST_F(TmpfsTest, AWriteThatFailsOnAFullDiskIsUndoneAndWritingResumesWithoutARestart) {
  const std::string data = mnt_ + "/data";
  const std::vector<std::string> flags = {"--min_free_disk_bytes=0"};
  auto server = std::make_unique<ServerProcess>(data, flags);
  JobClient client(JobClient::Connect(server->address()));
  std::vector<std::string> acknowledged;

  auto running = client.Submit(DemoSteps(20, 60000));  // three minutes, unless cancelled
  ASSERT_TRUE(running.ok()) << running.status();
  acknowledged.push_back(running->id());
  testing::WaitForJob(client, running->id(), [](const Job& j) { return j.state() == Job::RUNNING; });
  std::vector<v1::JobEvent> watched;
  absl::Notification watch_ended;
  std::thread watcher([&, address = server->address()] {
    JobClient own(JobClient::Connect(address));
    client::WatchOptions options;
    options.reconnect_timeout = absl::Seconds(5);  // ends once the server is killed
    auto end = own.Watch(running->id(), 0,
                         [&](const v1::JobEvent& e) { watched.push_back(e); }, options);
    EXPECT_TRUE(end.ok()) << end.status();
    watch_ended.Notify();
  });

  // Fill the disk with jobs whose labels are big, until a write fails.
  FillLeaving(0);
  v1::SubmitRequest heavy = DemoSteps(0, 0);
  for (int i = 0; i < 30; ++i) (*heavy.mutable_labels())[absl::StrCat("k", i)] = std::string(200, 'v');
  absl::Status failed;
  for (int i = 0; i < 20000 && failed.ok(); ++i) {
    auto job = client.Submit(heavy);
    if (job.ok()) acknowledged.push_back(job->id()); else failed = job.status();
  }
  ASSERT_FALSE(failed.ok()) << "the disk never filled";
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_NE(failed.message().find("No space left on device"), std::string::npos) << failed;
  // Every change is refused now, saying why; reads go on.
  auto refused = client.Submit(DemoSteps(0, 0));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("the store failed a write"), std::string::npos)
      << refused.status();
  for (const std::string& id : acknowledged) EXPECT_TRUE(client.GetStatus(id).ok()) << id;
  const int64_t stored_sequence = client.GetStatus(running->id())->last_sequence();

  // Space returns: the same process takes writes again (RocksDB retries every 5 s).
  std::filesystem::remove(mnt_ + "/ballast");
  absl::StatusOr<Job> after = absl::UnavailableError("not yet");
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30);
       !after.ok() && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(200))) {
    after = client.Submit(DemoSteps(0, 0));
  }
  ASSERT_TRUE(after.ok()) << after.status();
  acknowledged.push_back(after->id());
  EXPECT_EQ(testing::FollowJob(client, after->id()).back().type(), v1::JobEvent::SUCCEEDED);

  // The running job was stopped and runs again as attempt 1; cancelled now, its watcher
  // has every event, in order, the attempt given back once.
  testing::WaitForJob(client, running->id(), [&](const Job& j) {
    return j.state() == Job::RUNNING && j.last_sequence() >= stored_sequence + 2;
  });
  EXPECT_TRUE(client.Cancel(running->id()).ok());
  EXPECT_TRUE(watch_ended.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the watcher never saw the job end";
  if (!watch_ended.HasBeenNotified()) server->Kill();
  watcher.join();
  ASSERT_FALSE(watched.empty());
  for (size_t i = 0; i < watched.size(); ++i) EXPECT_EQ(watched[i].sequence(), int64_t(i + 1));
  std::vector<std::pair<v1::JobEvent::Type, int>> transitions;
  for (const v1::JobEvent& e : watched) {
    if (e.type() == v1::JobEvent::STEP || e.type() == v1::JobEvent::PROGRESS) continue;
    transitions.emplace_back(e.type(), e.status().attempt());
  }
  const std::vector<std::pair<v1::JobEvent::Type, int>> expected = {
      {v1::JobEvent::CREATED, 0}, {v1::JobEvent::STARTED, 1}, {v1::JobEvent::RETRYING, 0},
      {v1::JobEvent::STARTED, 1}, {v1::JobEvent::CANCELLED, 1}};
  EXPECT_EQ(transitions, expected);

  // Nothing acknowledged is lost, even to a kill -9 right after.
  server->Kill();
  server = std::make_unique<ServerProcess>(data, flags);
  JobClient again(JobClient::Connect(server->address()));
  for (const std::string& id : acknowledged) {
    auto job = again.GetStatus(id);
    EXPECT_TRUE(job.ok()) << id << ": " << job.status();
  }
  EXPECT_EQ(again.GetStatus(after->id())->state(), Job::SUCCEEDED);
}

TEST_F(TmpfsTest, ADataDirThatCannotBeWrittenIsRefusedAtStart) {
  const std::string data = mnt_ + "/data";
  {
    ServerProcess server(data);  // a store made while the disk was writable
    EXPECT_EQ(server.Stop(), 0);
  }
  ASSERT_EQ(mount("tmpfs", mnt_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=96m"), 0)
      << strerror(errno);
  auto [code, out] = testing::RunCommand(absl::StrCat(
      testing::BinaryPath("server/jobstream-server"), " --listen=127.0.0.1:0 --data_dir=", data,
      " 2>&1"));
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find(data), std::string::npos) << out;
  EXPECT_NE(out.find("Read-only file system"), std::string::npos) << out;
}

// A TCP proxy on 127.0.0.1 that holds back the server's first bytes on each connection
// for `delay`: as far as a connection's handshake can tell, a link that slow.
class SlowProxy {
 public:
  SlowProxy(const std::string& upstream, absl::Duration delay) : delay_(delay) {
    upstream_port_ = std::stoi(upstream.substr(upstream.rfind(':') + 1));
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listener_, 16) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "proxy: " << strerror(errno);
    }
    address_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~SlowProxy() {
    shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    for (std::thread& t : pumps_) t.join();
    close(listener_);
    for (int fd : fds_) close(fd);
  }
  const std::string& address() const { return address_; }

 private:
  void Accept() {
    for (;;) {
      const int client = accept(listener_, nullptr, nullptr);
      if (client < 0) return;
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(client);
        close(server);
        continue;
      }
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([client, server] { Pump(client, server, absl::ZeroDuration()); });
      pumps_.emplace_back([this, client, server] { Pump(server, client, delay_); });
    }
  }
  static void Pump(int from, int to, absl::Duration first) {
    char buf[16384];
    for (;;) {
      const ssize_t n = read(from, buf, sizeof buf);
      if (n <= 0) break;
      absl::SleepFor(first);
      first = absl::ZeroDuration();
      if (send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;  // no SIGPIPE
    }
    shutdown(to, SHUT_WR);
  }

  const absl::Duration delay_;
  int upstream_port_ = 0;
  int listener_ = -1;
  std::string address_;
  std::thread acceptor_;
  // Written by the acceptor only, read once it is joined.
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
};

// Every client (the CLI, the gateway, workers) connects through JobClient::Connect. gRPC
// gives a connection attempt its MIN_RECONNECT_BACKOFF as a deadline: at the 100 ms once
// set for quick reconnects, a server whose handshake took longer was never reached.
TEST(SlowLinkTest, AServerWhoseHandshakeTakesHalfASecondIsReached) {
  testing::TempDir dir;
  ServerProcess server(dir.sub("data"));
  SlowProxy proxy(server.address(), absl::Milliseconds(500));
  auto channel = JobClient::Connect(proxy.address(), client::ChannelOptions());
  ASSERT_TRUE(channel.ok()) << channel.status();
  JobClient client(*channel);
  auto job = client.Submit(DemoSteps(1, 0));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), Job::QUEUED);
}

}  // namespace
}  // namespace jobstream
