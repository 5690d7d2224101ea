// exec types on the real binary: a configured program per attempt, its line protocol,
// failures, timeouts, cancellation of a whole process tree, and a server killed mid-run.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/job_helpers.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::JobClient;
using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

// Runs on each store (store_test.h).
class ExecTest : public testing::StoreTest {
 protected:
  std::string Script(const std::string& name, const std::string& body) {
    return testing::WriteScript(dir_.sub(name), body);
  }
  // A server declaring one exec type per (name, json of the rest of its config).
  void StartServer(const std::vector<std::pair<std::string, std::string>>& types) {
    std::string json = R"({"types": [)";
    for (size_t i = 0; i < types.size(); ++i) {
      absl::StrAppend(&json, i ? "," : "", R"({"name": ")", types[i].first, R"(", )",
                      types[i].second, "}");
    }
    json += "]}";
    const std::string config = dir_.sub("config.json");
    std::ofstream(config) << json;
    flags_ = {"--config=" + config, "--retry_backoff=0s"};
    for (std::string& f : StoreFlags()) flags_.push_back(std::move(f));
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags_);
    client_ = std::make_unique<JobClient>(server_->Channel());
  }
  void Restart() {
    std::vector<std::string> flags = flags_;
    flags.push_back("--listen=" + server_->address());
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    client_ = std::make_unique<JobClient>(server_->Channel());
  }
  std::string Exec(const std::string& script, const std::string& more = "") {
    return absl::StrCat(R"("exec": {"argv": [")", script, R"("]})", more);
  }
  Job Submit(const std::string& type, const std::string& params = "{}") {
    v1::SubmitRequest request;
    request.set_type(type);
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(params, request.mutable_params()).ok());
    auto job = client_->Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  std::vector<JobEvent> Follow(const std::string& id) { return testing::FollowJob(*client_, id); }
  static std::vector<std::string> Types(const std::vector<JobEvent>& events) {
    std::vector<std::string> types;
    for (const auto& e : events) types.push_back(JobEvent::Type_Name(e.type()));
    return types;
  }
  template <typename P>
  Job WaitFor(const std::string& id, P pred, absl::Duration limit = absl::Seconds(15)) {
    return testing::WaitForJob(*client_, id, pred, limit);
  }

  pid_t ReadPid(const std::string& file) { return testing::ReadPidFile(dir_.sub(file)); }

  static bool Gone(pid_t pid) { return testing::ProcessGone(pid); }


  testing::TempDir dir_;
  std::vector<std::string> flags_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
};

JOBSTREAM_BOTH_STORES(ExecTest);

TEST_P(ExecTest, StepsProgressAndResultComeFromTheProgramsLines) {
  const std::string script = Script("steps.sh", R"(
read params
echo '{"step": "fetch", "stepCount": 2}'
echo 'a plain log line is not for us'
echo '{"fraction": 0.25, "message": "half of fetch"}'
echo '{"broken json'
echo '[1, 2, 3]'
echo '{"step": "render", "fraction": 0.5}'
echo "{\"result\": {\"params\": $params, \"job\": \"$JOBSTREAM_JOB_ID\", \"attempt\": $JOBSTREAM_ATTEMPT, \"type\": \"$JOBSTREAM_JOB_TYPE\", \"greeting\": \"$GREETING\"}}"
)");
  // The env comes from the config.
  StartServer({{"render", absl::StrCat(R"("exec": {"argv": [")", script,
                                       R"("], "env": {"GREETING": "hi"}})")}});
  Job job = Submit("render", R"({"frames": 24, "name": "intro"})");
  std::vector<JobEvent> events = Follow(job.id());
  EXPECT_EQ(Types(events), (std::vector<std::string>{"CREATED", "STARTED", "STEP", "PROGRESS",
                                                      "STEP", "SUCCEEDED"}));
  const Job& done = events.back().status();
  EXPECT_EQ(events[2].status().progress().step(), "fetch");
  EXPECT_EQ(events[2].status().progress().step_count(), 2);
  EXPECT_EQ(events[3].status().progress().message(), "half of fetch");
  EXPECT_EQ(events[4].status().progress().step(), "render");
  EXPECT_EQ(events[4].status().progress().step_index(), 2);
  const auto& result = done.result().struct_value().fields();
  EXPECT_EQ(result.at("params").struct_value().fields().at("frames").number_value(), 24);
  EXPECT_EQ(result.at("params").struct_value().fields().at("name").string_value(), "intro");
  EXPECT_EQ(result.at("job").string_value(), job.id());
  EXPECT_EQ(result.at("attempt").number_value(), 1);
  EXPECT_EQ(result.at("type").string_value(), "render");
  EXPECT_EQ(result.at("greeting").string_value(), "hi");
  // In-server runs are the server's: on PostgreSQL, which of the servers.
  EXPECT_EQ(done.worker_id(), postgres() ? kServerId : "server");
}

TEST_P(ExecTest, AFailingProgramIsRetriedThenFailsWithItsStderr) {
  const std::string fail = Script("fail.sh", "echo 'disk full on /dev/sda' >&2\nexit 3\n");
  const std::string refuse = Script("refuse.sh", R"(
echo '{"error": {"message": "customer 7 does not exist", "code": 5, "retryable": false, "details": {"customer": 7}}}'
exit 1
)");
  StartServer({{"fail", Exec(fail, R"(, "maxAttempts": 2)")},
               {"refuse", Exec(refuse, R"(, "maxAttempts": 3)")}});
  std::vector<JobEvent> events = Follow(Submit("fail").id());
  EXPECT_EQ(Types(events), (std::vector<std::string>{"CREATED", "STARTED", "RETRYING", "STARTED",
                                                      "FAILED"}));
  const v1::Error& error = events.back().status().error();
  EXPECT_NE(error.message().find("exited with status 3"), std::string::npos) << error.message();
  EXPECT_NE(error.message().find("disk full on /dev/sda"), std::string::npos) << error.message();

  events = Follow(Submit("refuse").id());
  EXPECT_EQ(Types(events), (std::vector<std::string>{"CREATED", "STARTED", "FAILED"}))
      << "the program said it is not worth retrying";
  const v1::Error& refused = events.back().status().error();
  EXPECT_EQ(refused.code(), 5);
  EXPECT_EQ(refused.message(), "customer 7 does not exist");
  EXPECT_EQ(refused.details().fields().at("customer").number_value(), 7);
}

TEST_P(ExecTest, ATimeoutStopsTheProgramAndFailsTheAttempt) {
  const std::string slow = Script("slow.sh", "sleep 30\n");
  StartServer({{"slow", Exec(slow, R"(, "timeout": "1s", "maxAttempts": 1)")}});
  const absl::Time start = absl::Now();
  std::vector<JobEvent> events = Follow(Submit("slow").id());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(Types(events).back(), "FAILED");
  EXPECT_EQ(events.back().status().error().code(), 4);  // DEADLINE_EXCEEDED
  EXPECT_NE(events.back().status().error().message().find("timed out after 1s"),
            std::string::npos);
}

TEST_P(ExecTest, CancelStopsTheProgramAndEveryProcessItForked) {
  const std::string tree = Script("tree.sh", absl::StrCat(R"(
sleep 1000 & echo $! > )", dir_.sub("child1"), R"(
(sleep 1000 & echo $! > )", dir_.sub("child2"), R"(; wait) &
echo $$ > )", dir_.sub("parent"), R"(
echo '{"step": "spawned"}'
wait
)"));
  // This one ignores SIGTERM: SIGKILL follows after the grace.
  const std::string stubborn = Script("stubborn.sh", absl::StrCat(R"(
trap '' TERM
echo $$ > )", dir_.sub("stubborn"), R"(
echo '{"step": "ignoring"}'
while true; do sleep 0.1; done
)"));
  StartServer({{"tree", Exec(tree)},
               {"stubborn", absl::StrCat(R"("exec": {"argv": [")", stubborn,
                                         R"("], "killGrace": "1s"})")}});
  Job job = Submit("tree");
  WaitFor(job.id(), [](const Job& j) { return j.progress().step() == "spawned"; });
  const pid_t parent = ReadPid("parent"), child1 = ReadPid("child1"), child2 = ReadPid("child2");
  ASSERT_TRUE(client_->Cancel(job.id()).ok());
  Job ended = WaitFor(job.id(), [](const Job& j) { return v1::IsFinished(j.state()); });
  EXPECT_EQ(ended.state(), Job::CANCELLED);
  EXPECT_TRUE(Gone(parent));
  EXPECT_TRUE(Gone(child1));
  EXPECT_TRUE(Gone(child2)) << "a grandchild in a subshell stops too";

  Job hard = Submit("stubborn");
  WaitFor(hard.id(), [](const Job& j) { return j.progress().step() == "ignoring"; });
  const pid_t pid = ReadPid("stubborn");
  ASSERT_TRUE(client_->Cancel(hard.id()).ok());
  Job killed = WaitFor(hard.id(), [](const Job& j) { return v1::IsFinished(j.state()); });
  EXPECT_EQ(killed.state(), Job::CANCELLED);
  EXPECT_TRUE(Gone(pid));
}

TEST_P(ExecTest, HugeLinesAndUnreadStdinNeitherHangNorBreakAnything) {
  const std::string huge = Script("huge.sh", R"(
cat > /dev/null
head -c 3000000 /dev/zero | tr '\0' 'x'
echo
echo '{"step": "after the huge line"}'
head -c 100000 /dev/zero | tr '\0' 'e' >&2
echo '{"result": "done"}'
)");
  const std::string deaf = Script("deaf.sh", "echo '{\"result\": \"never read stdin\"}'\n");
  StartServer({{"huge", Exec(huge)}, {"deaf", Exec(deaf)}});
  std::vector<JobEvent> events = Follow(Submit("huge").id());
  EXPECT_EQ(Types(events), (std::vector<std::string>{"CREATED", "STARTED", "STEP", "SUCCEEDED"}));
  EXPECT_EQ(events.back().status().result().string_value(), "done");
  // 600 KB of params to a program that exits without reading them.
  const std::string big = absl::StrCat(R"({"blob": ")", std::string(600000, 'b'), R"("})");
  events = Follow(Submit("deaf", big).id());
  EXPECT_EQ(Types(events).back(), "SUCCEEDED");
  EXPECT_EQ(events.back().status().result().string_value(), "never read stdin");
}

TEST_P(ExecTest, TheConcurrencyLimitHoldsAcrossJobs) {
  const std::string nap = Script("nap.sh", "sleep 0.3\necho '{\"result\": 1}'\n");
  StartServer({{"nap", Exec(nap, R"(, "concurrency": 1)")}});
  std::vector<Job> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(Submit("nap"));
  std::vector<Job> done;
  for (const Job& j : jobs) {
    std::vector<JobEvent> events = Follow(j.id());
    done.push_back(events.back().status());
  }
  std::sort(done.begin(), done.end(), [](const Job& a, const Job& b) {
    return v1::ToTime(a.start_time()) < v1::ToTime(b.start_time());
  });
  for (size_t i = 1; i < done.size(); ++i) {
    EXPECT_GE(v1::ToTime(done[i].start_time()), v1::ToTime(done[i - 1].end_time()))
        << "job " << i << " started before the one before it ended";
  }
}

TEST_P(ExecTest, AProgramDiesWithItsKilledServerAndItsJobIsRetried) {
  const std::string once = Script("once.sh", absl::StrCat(R"(
if [ -f )", dir_.sub("ran"), R"( ]; then echo '{"result": "second attempt"}'; exit 0; fi
touch )", dir_.sub("ran"), R"(
sleep 1000 & echo $! > )", dir_.sub("child"), R"(
echo $$ > )", dir_.sub("pid"), R"(
echo '{"step": "working"}'
wait
)"));
  StartServer({{"once", Exec(once, R"(, "maxAttempts": 2)")}});
  Job job = Submit("once");
  WaitFor(job.id(), [](const Job& j) { return j.progress().step() == "working"; });
  const pid_t pid = ReadPid("pid"), child = ReadPid("child");
  server_->Kill();
  EXPECT_TRUE(Gone(pid)) << "the program does not outlive its server";
  EXPECT_TRUE(Gone(child)) << "nor does what it forked";
  Restart();
  std::vector<JobEvent> events = Follow(job.id());
  std::vector<std::string> types = Types(events);
  EXPECT_EQ(types, (std::vector<std::string>{"CREATED", "STARTED", "STEP", "RETRYING", "STARTED",
                                             "SUCCEEDED"}));
  EXPECT_EQ(events.back().status().result().string_value(), "second attempt");
  EXPECT_EQ(events.back().status().attempt(), 2);
}

// Open descriptors of a process, and its children that are zombies.
// A process's open descriptors: its sockets apart, as a connection pool opens up to its
// size of them as load asks (PostgreSQL's: --pg_pool_size, 8), and everything else
// (pipes, files, pidfds: what a run opens).
struct Fds {
  size_t sockets = 0, other = 0;
};
Fds OpenFds(pid_t pid) {
  Fds n;
  for (const auto& entry :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"))) {
    std::error_code error;
    const std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    ++(absl::StartsWith(target, "socket:") ? n.sockets : n.other);
  }
  return n;
}
int Zombies(pid_t parent) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    // Read with read(2): a process that ends between the open and the read (any process
    // on the machine: tests run side by side) fails the read with ESRCH, which
    // istreambuf_iterator reported by throwing.
    char buffer[1024];
    const int fd = open((entry.path() / "stat").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const ssize_t got = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (got <= 0) continue;
    const std::string stat(buffer, static_cast<size_t>(got));
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (sscanf(stat.c_str() + paren + 1, " %c %d", &state, &ppid) == 2 && state == 'Z' &&
        ppid == parent) {
      ++n;
    }
  }
  return n;
}

TEST_P(ExecTest, ManyRunsLeaveNoZombieAndNoLeakedDescriptor) {
  const std::string quick = Script("quick.sh", "cat >/dev/null; echo '{\"result\": 1}'\n");
  const std::string failing = Script("failing.sh", "echo oops >&2; exit 1\n");
  StartServer({{"quick", Exec(quick)}, {"failing", Exec(failing, R"(, "maxAttempts": 1)")}});
  // Forty runs at a time, twice: the first warms up the threads and files the server
  // opens once (on PostgreSQL, the pool's connections, opened as concurrent writes need
  // them); a descriptor leaked per run shows in the second.
  auto forty = [&] {
    std::vector<Job> jobs;
    for (int i = 0; i < 40; ++i) jobs.push_back(Submit(i % 4 == 0 ? "failing" : "quick"));
    for (const Job& j : jobs) Follow(j.id());
    absl::SleepFor(absl::Milliseconds(200));
  };
  forty();
  const Fds before = OpenFds(server_->pid());
  forty();
  EXPECT_EQ(Zombies(server_->pid()), 0);
  const Fds after = OpenFds(server_->pid());
  EXPECT_LE(after.other, before.other + 2) << "descriptors leak per run";
  // A socket leaked per run would be 40 more; the pool may grow by up to its size.
  EXPECT_LE(after.sockets, before.sockets + (postgres() ? 8 : 2)) << "sockets leak per run";
}

}  // namespace
}  // namespace jobstream
