// RunProgram on real programs (/bin/sh scripts made at test time), each test under both
// supervisors: jobstream-supervisor (copied beside this test) and a fork of this process.
#include "server/exec/program.h"

#include <signal.h>
#include <stdlib.h>

#include <atomic>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/exec/child_process.h"
#include "tests/support/job_helpers.h"
#include "tests/support/temp_dir.h"

namespace jobstream::exec {
namespace {

class ProgramTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    // RunProgram writes a program's stdin assuming SIGPIPE is ignored, as the server and
    // the CLI ignore it: a program that exits without reading it must not kill the test.
    signal(SIGPIPE, SIG_IGN);
    if (std::string(GetParam()) == "Fork") {
      setenv("JOBSTREAM_SUPERVISOR", "", 1);
      ASSERT_EQ(SupervisorPath(), "");
    } else {
      unsetenv("JOBSTREAM_SUPERVISOR");
      ASSERT_NE(SupervisorPath(), "") << "jobstream-supervisor is not beside this test";
    }
  }
  void TearDown() override { unsetenv("JOBSTREAM_SUPERVISOR"); }

  ProgramOutcome Run(const std::string& body, const std::string& input = "{}\n",
                     ProgramHooks hooks = {}) {
    ProgramOptions options;
    options.argv = {testing::WriteScript(dir_.sub("p.sh"), body)};
    options.kill_grace = absl::Milliseconds(500);
    options.max_line_bytes = 1000;
    if (!hooks.report) hooks.report = [this](const v1::Progress& p) { reports_.push_back(p); };
    return RunProgram(options, input, hooks);
  }
  testing::TempDir dir_;
  std::vector<v1::Progress> reports_;
};

TEST_P(ProgramTest, TheLastLineCountsWithoutANewlineAndStdinArrives) {
  ProgramOutcome out = Run("read p\nprintf '{\"result\": %s}' \"$p\"\n", "{\"x\": 1}\n");
  ASSERT_TRUE(out.result.ok()) << out.result.status();
  EXPECT_EQ(out.result->struct_value().fields().at("x").number_value(), 1);
}

TEST_P(ProgramTest, StepsAndProgressAreReportedInOrderAndLongLinesSkipped) {
  ProgramOutcome out = Run(R"(
echo '{"step": "one", "stepCount": 2}'
head -c 5000 /dev/zero | tr '\0' 'x'; echo
echo '{"fraction": 0.5}'
echo '{"step": "two", "message": "m"}'
)");
  ASSERT_TRUE(out.result.ok());
  EXPECT_EQ(out.result->kind_case(), google::protobuf::Value::kNullValue) << "no result: null";
  ASSERT_EQ(reports_.size(), 3u);
  EXPECT_EQ(reports_[0].step(), "one");
  EXPECT_EQ(reports_[0].step_count(), 2);
  EXPECT_DOUBLE_EQ(reports_[1].fraction(), 0.5);
  EXPECT_EQ(reports_[2].message(), "m");
}

TEST_P(ProgramTest, StderrTailIsValidUtf8AndBounded) {
  ProgramOutcome out = Run("head -c 10000 /dev/zero | tr '\\0' 'e' >&2\nprintf 'bad \\377\\376 end' >&2\nexit 4\n");
  ASSERT_FALSE(out.result.ok());
  EXPECT_TRUE(out.retryable);
  const std::string message(out.result.status().message());
  EXPECT_TRUE(absl::StrContains(message, "exited with status 4"));
  EXPECT_TRUE(absl::StrContains(message, "bad ?? end")) << "invalid bytes replaced";
  EXPECT_LT(message.size(), 2500u) << "only the tail";
}

TEST_P(ProgramTest, AnErrorLineIsKeptWithinWhatAJobsErrorMayHold) {
  ProgramOptions options;  // the default line limit: the 20 KB line is read
  options.argv = {testing::WriteScript(dir_.sub("err.sh"), R"(
printf '{"error": {"code": 99, "retryable": false, "message": "'
head -c 20000 /dev/zero | tr '\0' 'm'
echo '"}}'
)")};
  ProgramOutcome out = RunProgram(options, "", {});
  ASSERT_FALSE(out.result.ok());
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kUnknown) << "99 is no google.rpc.Code";
  EXPECT_EQ(out.result.status().message().size(), 4096u);
  EXPECT_FALSE(out.retryable);
}

TEST_P(ProgramTest, AJobProgramGetsItsParamsAndEnvironment) {
  ProgramOptions options;
  options.argv = {testing::WriteScript(dir_.sub("job.sh"), R"(
read p
echo "{\"result\": {\"p\": $p, \"id\": \"$JOBSTREAM_JOB_ID\", \"type\": \"$JOBSTREAM_JOB_TYPE\", \"attempt\": $JOBSTREAM_ATTEMPT}}"
)")};
  google::protobuf::Struct params;
  (*params.mutable_fields())["step_ms"].set_number_value(5);
  ProgramOutcome out = RunJobProgram(options, "job-1", "render", 3, params, "", {});
  ASSERT_TRUE(out.result.ok()) << out.result.status();
  const auto& result = out.result->struct_value().fields();
  EXPECT_EQ(result.at("p").struct_value().fields().at("step_ms").number_value(), 5)
      << "proto field names as given, not lowerCamel";
  EXPECT_EQ(result.at("id").string_value(), "job-1");
  EXPECT_EQ(result.at("type").string_value(), "render");
  EXPECT_EQ(result.at("attempt").number_value(), 3);
}

TEST_P(ProgramTest, AProgramThatCannotStartIsNotRetryable) {
  ProgramOptions options;
  options.argv = {dir_.sub("vanished.sh")};
  ProgramOutcome out = RunProgram(options, "", {});
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(out.retryable);
  EXPECT_TRUE(absl::StrContains(out.result.status().message(), "No such file"));
}

TEST_P(ProgramTest, StopEndsTheProgramAsCancelled) {
  std::atomic<int> ticks{0};
  ProgramHooks hooks;
  hooks.stop = [&] { return ticks.load() > 2; };
  hooks.tick = [&] { ++ticks; };
  const absl::Time start = absl::Now();
  ProgramOutcome out = Run("trap '' TERM\nsleep 30\n", "", hooks);
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "SIGKILL after the grace";
}

TEST_P(ProgramTest, TheProgramRunsUnderTheChosenSupervisorInItsWorkingDirectory) {
  ProgramOptions options;
  options.argv = {testing::WriteScript(dir_.sub("where.sh"), R"sh(
printf '{"result": {"parent": "%s", "dir": "%s"}}' "$(cat /proc/$PPID/comm)" "$(pwd)"
)sh")};
  options.working_dir = dir_.sub("work");
  ASSERT_EQ(mkdir(options.working_dir.c_str(), 0700), 0);
  ProgramOutcome out = RunProgram(options, "", {});
  ASSERT_TRUE(out.result.ok()) << out.result.status();
  const auto& result = out.result->struct_value().fields();
  // The kernel keeps 15 bytes of a command's name.
  if (std::string(GetParam()) == "Fork") {
    EXPECT_NE(result.at("parent").string_value(), "jobstream-super");
  } else {
    EXPECT_EQ(result.at("parent").string_value(), "jobstream-super");
  }
  EXPECT_EQ(result.at("dir").string_value(), options.working_dir);

  options.working_dir = dir_.sub("missing");
  out = RunProgram(options, "", {});
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(out.result.status().message(), "No such file"))
      << out.result.status();
}

INSTANTIATE_TEST_SUITE_P(Supervisors, ProgramTest, ::testing::Values("Supervisor", "Fork"),
                         [](const auto& info) { return std::string(info.param); });

TEST(SupervisorTest, AMissingSupervisorIsAClearErrorAndNothingRuns) {
  testing::TempDir dir_;
  setenv("JOBSTREAM_SUPERVISOR", dir_.sub("no-such-supervisor").c_str(), 1);
  const std::string marker = dir_.sub("ran");
  ProgramOptions options;
  options.argv = {testing::WriteScript(dir_.sub("touch.sh"), "touch " + marker + "\n")};
  ProgramOutcome out = RunProgram(options, "", {});
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(out.result.status().message(),
                                "cannot start the supervisor " + dir_.sub("no-such-supervisor")))
      << out.result.status();
  EXPECT_NE(access(marker.c_str(), F_OK), 0);
  unsetenv("JOBSTREAM_SUPERVISOR");
}

}  // namespace
}  // namespace jobstream::exec
