// `jobstream work` on real processes: a worker runs a script per job with the line
// protocol, heartbeats through silence, stops the program on cancel, hands jobs back on
// SIGTERM, and many workers — some killed mid-run — finish every job exactly once.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <regex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/process.h"
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
class WorkCommandTest : public testing::StoreTest {
 protected:
  void TearDown() override {
    for (pid_t pid : workers_) testing::StopProcess(pid, SIGKILL);
  }
  std::string Script(const std::string& name, const std::string& body) {
    const std::string path = dir_.sub(name);
    std::ofstream(path) << "#!/bin/sh\n" << body;
    chmod(path.c_str(), 0755);
    return path;
  }
  void StartServer(const std::string& type_json) {
    const std::string config = dir_.sub("config.json");
    std::ofstream(config) << R"({"types": [)" << type_json << "]}";
    std::vector<std::string> flags = {"--config=" + config, "--retry_backoff=0s"};
    for (std::string& f : StoreFlags()) flags.push_back(std::move(f));
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    client_ = std::make_unique<JobClient>(server_->Channel());
  }
  pid_t StartWorker(const std::vector<std::string>& flags, const std::string& script) {
    std::vector<std::string> argv = {testing::BinaryPath("client/jobstream"),
                                     "--server=" + server_->address(), "work"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("--");
    argv.push_back(script);
    pid_t pid = testing::Spawn(argv, dir_.sub("workers.log"));
    workers_.push_back(pid);
    return pid;
  }
  int StopWorker(pid_t pid, int signal) {
    workers_.erase(std::find(workers_.begin(), workers_.end(), pid));
    return testing::StopProcess(pid, signal);
  }
  Job Submit(const std::string& params = "{}") {
    v1::SubmitRequest request;
    request.set_type("report");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(params, request.mutable_params()).ok());
    auto job = client_->Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  std::vector<JobEvent> Follow(const std::string& id) {
    std::vector<JobEvent> events;
    auto end = client_->Watch(id, 0, [&](const JobEvent& e) { events.push_back(e); });
    EXPECT_TRUE(end.ok()) << end.status();
    if (events.empty()) events.emplace_back();  // callers look at back()
    return events;
  }
  template <typename P>
  Job WaitFor(const std::string& id, P pred, absl::Duration limit = absl::Seconds(15)) {
    return testing::WaitForJob(*client_, id, pred, limit);
  }

  pid_t ReadPid(const std::string& file) { return testing::ReadPidFile(dir_.sub(file)); }

  static bool Gone(pid_t pid) { return testing::ProcessGone(pid); }


  testing::TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<JobClient> client_;
  std::vector<pid_t> workers_;
};

JOBSTREAM_BOTH_STORES(WorkCommandTest);

TEST_P(WorkCommandTest, RunsTheSameScriptAnExecTypeWould) {
  const std::string script = Script("job.sh", R"(
read params
echo '{"step": "fetch", "stepCount": 2}'
echo '{"fraction": 0.25, "message": "a quarter"}'
echo '{"step": "render"}'
echo "{\"result\": {\"params\": $params, \"job\": \"$JOBSTREAM_JOB_ID\"}}"
)");
  StartServer(R"({"name": "report", "external": {}})");
  StartWorker({"--type=report", "--worker_id=box-1", "--concurrency=2"}, script);
  for (int i = 0; i < 3; ++i) {
    Job job = Submit(absl::StrCat(R"({"n": )", i, "}"));
    std::vector<JobEvent> events = Follow(job.id());
    std::vector<std::string> types;
    for (const auto& e : events) types.push_back(JobEvent::Type_Name(e.type()));
    EXPECT_EQ(types, (std::vector<std::string>{"CREATED", "STARTED", "STEP", "PROGRESS", "STEP",
                                               "SUCCEEDED"}));
    const Job& done = events.back().status();
    EXPECT_EQ(done.worker_id(), "box-1");
    const auto& result = done.result().struct_value().fields();
    EXPECT_EQ(result.at("params").struct_value().fields().at("n").number_value(), i);
    EXPECT_EQ(result.at("job").string_value(), job.id());
  }
}

TEST_P(WorkCommandTest, ATypeTheServerRefusesEndsTheWorkerWithExitOne) {
  StartServer(R"({"name": "report", "external": {}})");
  for (const char* flags : {"--type=nope", "--type=demo.steps --concurrency=3"}) {
    auto [code, out] = testing::RunCommand(absl::StrCat(
        "timeout 20 ", testing::BinaryPath("client/jobstream"), " --server=", server_->address(),
        " work ", flags, " -- /bin/true 2>&1"));
    EXPECT_EQ(code, 1) << flags << ": " << out;
    EXPECT_NE(out.find("LeaseJob refused"), std::string::npos) << out;
  }
}

TEST_P(WorkCommandTest, HeartbeatsKeepASilentJobsLease) {
  const std::string quiet = Script("quiet.sh", "sleep 3\necho '{\"result\": \"patient\"}'\n");
  StartServer(R"({"name": "report", "external": {"leaseDuration": "1s"}, "maxAttempts": 1})");
  StartWorker({"--type=report"}, quiet);
  std::vector<JobEvent> events = Follow(Submit().id());
  EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED) << events.back().status().error().message();
  EXPECT_EQ(events.back().status().attempt(), 1);
}

TEST_P(WorkCommandTest, CancelStopsTheProgram) {
  const std::string slow = Script("slow.sh", absl::StrCat(
      "echo $$ > ", dir_.sub("pid"), "\necho '{\"step\": \"sleeping\"}'\nsleep 1000\n"));
  StartServer(R"({"name": "report", "external": {"leaseDuration": "2s"}})");
  StartWorker({"--type=report", "--kill_grace=1s"}, slow);
  Job job = Submit();
  WaitFor(job.id(), [](const Job& j) { return j.progress().step() == "sleeping"; });
  const pid_t pid = ReadPid("pid");
  ASSERT_TRUE(client_->Cancel(job.id()).ok());
  Job ended = WaitFor(job.id(), [](const Job& j) { return v1::IsFinished(j.state()); });
  EXPECT_EQ(ended.state(), Job::CANCELLED);
  EXPECT_TRUE(Gone(pid));
}

TEST_P(WorkCommandTest, SigtermHandsUnfinishedJobsBackWithoutSpendingAnAttempt) {
  const std::string slow = Script("slow.sh", absl::StrCat(
      "echo $$ > ", dir_.sub("pid"), "\necho '{\"step\": \"sleeping\"}'\nsleep 1000\n"));
  StartServer(R"({"name": "report", "external": {}, "maxAttempts": 1})");
  pid_t worker = StartWorker({"--type=report", "--drain_timeout=1s", "--kill_grace=1s"}, slow);
  Job job = Submit();
  WaitFor(job.id(), [](const Job& j) { return j.progress().step() == "sleeping"; });
  const pid_t pid = ReadPid("pid");
  const int status = StopWorker(worker, SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(Gone(pid));
  Job back = client_->GetStatus(job.id()).value();
  EXPECT_EQ(back.state(), Job::QUEUED);
  EXPECT_EQ(back.attempt(), 0) << "handed back, not failed";
  // Another worker picks it up and, this time, it finishes.
  const std::string quick = Script("quick.sh", "echo '{\"result\": 1}'\n");
  StartWorker({"--type=report"}, quick);
  Job done = WaitFor(job.id(), [](const Job& j) { return v1::IsFinished(j.state()); });
  EXPECT_EQ(done.state(), Job::SUCCEEDED);
}

TEST_P(WorkCommandTest, AKilledWorkersJobIsRetriedElsewhereAndItsProgramDies) {
  const std::string slow = Script("slow.sh", absl::StrCat(
      "if [ -f ", dir_.sub("ran"), " ]; then echo '{\"result\": \"second\"}'; exit 0; fi\n",
      "touch ", dir_.sub("ran"), "\necho $$ > ", dir_.sub("pid"),
      "\necho '{\"step\": \"sleeping\"}'\nsleep 1000\n"));
  StartServer(R"({"name": "report", "external": {"leaseDuration": "1s"}})");
  pid_t worker = StartWorker({"--type=report"}, slow);
  Job job = Submit();
  WaitFor(job.id(), [](const Job& j) { return j.progress().step() == "sleeping"; });
  const pid_t pid = ReadPid("pid");
  StopWorker(worker, SIGKILL);
  EXPECT_TRUE(Gone(pid)) << "the program does not outlive its worker";
  StartWorker({"--type=report"}, slow);
  std::vector<JobEvent> events = Follow(job.id());
  EXPECT_EQ(events.back().type(), JobEvent::SUCCEEDED);
  EXPECT_EQ(events.back().status().attempt(), 2);
  EXPECT_EQ(events.back().status().result().string_value(), "second");
}

TEST_P(WorkCommandTest, ManyWorkersSomeKilledFinishEveryJobExactlyOnce) {
  const std::string script = Script("job.sh", R"(
read params
echo '{"step": "work"}'
echo "{\"result\": $params}"
)");
  StartServer(R"({"name": "report", "external": {"leaseDuration": "1s"}, "maxAttempts": 20})");
  constexpr int kWorkers = 8, kJobs = 1000;
  std::vector<pid_t> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(StartWorker({"--type=report", "--concurrency=2",
                                   absl::StrCat("--worker_id=w", w)}, script));
  }
  std::vector<std::pair<std::string, int>> ids;  // job id, its params.n
  std::vector<std::thread> submitters;
  std::mutex mu;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&, t] {
      JobClient c(server_->Channel());
      for (int i = t; i < kJobs; i += 4) {
        v1::SubmitRequest request;
        request.set_type("report");
        (*request.mutable_params()->mutable_fields())["n"].set_number_value(i);
        auto job = c.Submit(request);
        ASSERT_TRUE(job.ok()) << job.status();
        std::lock_guard<std::mutex> lock(mu);
        ids.emplace_back(job->id(), i);
      }
    });
  }
  // Kill three workers mid-run (and start two fresh ones).
  absl::SleepFor(absl::Milliseconds(400));
  for (int w = 0; w < 3; ++w) StopWorker(workers[w], SIGKILL);
  for (int w = 0; w < 2; ++w) {
    StartWorker({"--type=report", "--concurrency=2", absl::StrCat("--worker_id=fresh", w)}, script);
  }
  for (auto& t : submitters) t.join();
  ASSERT_EQ(ids.size(), static_cast<size_t>(kJobs));

  int retried = 0;
  for (const auto& [id, n] : ids) {
    Job job = WaitFor(id, [](const Job& j) { return v1::IsFinished(j.state()); },
                      absl::Seconds(60));
    ASSERT_EQ(job.state(), Job::SUCCEEDED) << id << " " << job.error().message();
    std::vector<JobEvent> events = Follow(id);
    for (size_t i = 0; i < events.size(); ++i) {
      ASSERT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1)) << id;
      retried += events[i].type() == JobEvent::RETRYING;
    }
    EXPECT_EQ(job.last_sequence(), events.back().sequence()) << id << ": nothing after the end";
    EXPECT_EQ(events.back().status().result().struct_value().fields().at("n").number_value(), n)
        << "each job's own params came back as its result";
  }
  // What the workers say: no job was completed twice. A worker killed between its
  // CompleteJob and the log line leaves a job unlisted, so a few may be missing.
  std::ifstream log(dir_.sub("workers.log"));
  std::map<std::string, int> completions;
  const std::regex completed(R"(^\S+ jobstream work: job ([0-9a-z]{26}): completed \(SUCCEEDED\)$)");
  for (std::string line; std::getline(log, line);) {
    std::smatch match;
    if (std::regex_match(line, match, completed)) ++completions[match[1]];
  }
  for (const auto& [id, count] : completions) EXPECT_EQ(count, 1) << id << " completed twice";
  EXPECT_GE(completions.size(), static_cast<size_t>(kJobs - 3 * 2));
  v1::ListJobsRequest running;
  running.add_states(Job::RUNNING);
  running.add_states(Job::QUEUED);
  EXPECT_EQ(client_->List(running)->jobs_size(), 0) << "nothing stuck";
  std::cerr << "jobs retried after their worker was killed: " << retried << "\n";
}

}  // namespace
}  // namespace jobstream
