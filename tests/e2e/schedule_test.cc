// Schedules on the real binary and each store: interval fires on time, one job per fire
// time, the catch-up policies across a kill -9, overlap, pause/resume/trigger/update/
// delete, and bad input refused with nothing written.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/schedules.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using testing::ServerProcess;
using v1::Job;
using v1::Schedule;

class ScheduleTest : public testing::StoreTest {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = StoreFlags();
    for (std::string& f : extra) flags.push_back(std::move(f));
    if (server_) flags.push_back("--listen=" + server_->address());
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    schedules_ = v1::ScheduleService::NewStub(server_->Channel());
    jobs_ = v1::JobService::NewStub(server_->Channel());
  }

  // Every second from the next whole second, running a demo job of `step_ms`.
  Schedule EverySecond(const std::string& id, int step_ms = 0) {
    Schedule s;
    s.set_id(id);
    s.mutable_interval()->set_seconds(1);
    s.mutable_job()->set_type("demo.steps");
    google::protobuf::util::JsonStringToMessage(
        absl::StrCat(R"({"steps": ["a"], "ticks": 0, "step_ms": )", step_ms, "}"),
        s.mutable_job()->mutable_params());
    s.set_overlap(Schedule::ALLOW);
    return s;
  }

  grpc::Status Create(const Schedule& s, Schedule* out = nullptr, bool paused = false) {
    grpc::ClientContext ctx;
    v1::CreateScheduleRequest request;
    *request.mutable_schedule() = s;
    request.set_paused(paused);
    Schedule ignored;
    return schedules_->CreateSchedule(&ctx, request, out ? out : &ignored);
  }

  Schedule Get(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetScheduleRequest request;
    request.set_id(id);
    Schedule out;
    grpc::Status s = schedules_->GetSchedule(&ctx, request, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  void Pause(const std::string& id) {
    grpc::ClientContext ctx;
    v1::PauseScheduleRequest request;
    request.set_id(id);
    Schedule out;
    ASSERT_TRUE(schedules_->PauseSchedule(&ctx, request, &out).ok());
  }

  // The schedule's jobs by their nominal fire time (several if a time had several).
  std::multimap<int64_t, Job> JobsOf(const std::string& id) {
    std::multimap<int64_t, Job> out;
    std::string token;
    do {
      grpc::ClientContext ctx;
      v1::ListJobsRequest request;
      (*request.mutable_labels())["jobstream/schedule"] = id;
      request.set_page_size(1000);
      request.set_page_token(token);
      v1::ListJobsResponse response;
      grpc::Status s = jobs_->ListJobs(&ctx, request, &response);
      EXPECT_TRUE(s.ok()) << s.error_message();
      for (const Job& job : response.jobs()) {
        absl::Time t;
        std::string err;
        EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full,
                                    job.labels().at("jobstream/fire-time"), &t, &err))
            << err;
        out.emplace(absl::ToUnixSeconds(t), job);
      }
      token = response.next_page_token();
    } while (!token.empty());
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::ScheduleService::Stub> schedules_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
};
JOBSTREAM_BOTH_STORES(ScheduleTest);

TEST_P(ScheduleTest, AnIntervalFiresOnTimeOneLabelledJobPerFireTime) {
  Start();
  Schedule created;
  Schedule tick = EverySecond("tick");
  tick.mutable_job()->set_concurrency_key("customer 7");
  ASSERT_TRUE(Create(tick, &created).ok());
  EXPECT_EQ(created.id(), "tick");
  EXPECT_EQ(created.job().concurrency_key(), "customer 7");
  EXPECT_EQ(created.overlap(), Schedule::ALLOW);
  EXPECT_EQ(created.catch_up(), Schedule::SKIP_MISSED);  // the default, stated
  ASSERT_EQ(created.next_fire_times_size(), 5);
  for (int i = 1; i < 5; ++i) {
    EXPECT_EQ(created.next_fire_times(i).seconds() - created.next_fire_times(i - 1).seconds(), 1);
  }
  absl::SleepFor(absl::Milliseconds(4300));
  Pause("tick");
  const std::multimap<int64_t, Job> jobs = JobsOf("tick");
  ASSERT_GE(jobs.size(), 3u);
  int64_t expected = created.next_fire_times(0).seconds();
  for (const auto& [nominal, job] : jobs) {
    EXPECT_EQ(nominal, expected++) << "one job per fire time, none missing";
    // Submitted at its fire time (not before; within a second after, even under ASan).
    const absl::Time made = v1::ToTime(job.create_time());
    EXPECT_GE(made, absl::FromUnixSeconds(nominal));
    EXPECT_LT(made, absl::FromUnixSeconds(nominal) + absl::Seconds(1)) << job.id();
    EXPECT_EQ(job.type(), "demo.steps");
    EXPECT_EQ(job.concurrency_key(), "customer 7") << "the template's key, on every fire's job";
  }
  const Schedule after = Get("tick");
  EXPECT_EQ(after.fired_count(), static_cast<int64_t>(jobs.size()));
  EXPECT_EQ(after.last_fire_time().seconds(), jobs.rbegin()->first);
  EXPECT_EQ(after.last_job_id(), jobs.rbegin()->second.id());
  EXPECT_TRUE(after.paused());
  EXPECT_EQ(after.next_fire_times_size(), 0);
}

TEST_P(ScheduleTest, EachCatchUpPolicyAcrossAKill9LosesNoFireAndRepeatsNone) {
  Start();
  const std::vector<std::pair<std::string, Schedule::CatchUpPolicy>> policies = {
      {"skip-missed", Schedule::SKIP_MISSED},
      {"run-once", Schedule::RUN_ONCE},
      {"run-all", Schedule::RUN_ALL}};
  for (const auto& [id, policy] : policies) {
    Schedule s = EverySecond(id);
    s.set_catch_up(policy);
    ASSERT_TRUE(Create(s).ok());
  }
  absl::SleepFor(absl::Milliseconds(2500));
  server_->Kill();
  const absl::Time killed = absl::Now();
  absl::SleepFor(absl::Milliseconds(3500));
  Start();
  const absl::Time restarted = absl::Now();
  absl::SleepFor(absl::Milliseconds(2500));
  for (const auto& [id, policy] : policies) Pause(id);

  for (const auto& [id, policy] : policies) {
    SCOPED_TRACE(id);
    const std::multimap<int64_t, Job> jobs = JobsOf(id);
    std::vector<int64_t> times;
    for (const auto& [nominal, job] : jobs) times.push_back(nominal);
    ASSERT_FALSE(times.empty());
    EXPECT_EQ(std::set<int64_t>(times.begin(), times.end()).size(), times.size())
        << "a fire time with two jobs";
    EXPECT_GE(times.back(), absl::ToUnixSeconds(restarted)) << "fires again after the restart";
    EXPECT_LT(times.front(), absl::ToUnixSeconds(killed)) << "fired before the kill";
    const int64_t missing = times.back() - times.front() + 1 - static_cast<int64_t>(times.size());
    if (policy == Schedule::RUN_ALL) {
      EXPECT_EQ(missing, 0) << "every fire time of the downtime ran";
    } else {
      // Only the newest of the downtime's fire times ran (it was not a minute late).
      EXPECT_GE(missing, 2);
      EXPECT_EQ(Get(id).skipped_count(), missing);
    }
  }
}

TEST_P(ScheduleTest, AFireWhoseJobCannotBeMadeIsSkippedWithItsErrorAndLaterFiresGoOn) {
  // The job's type is in the config at first, gone after a restart: each fire's Submit is
  // refused for good, so it is counted skipped (not retried for ever) and says why.
  auto config = [&](const std::string& types) {
    const std::string path = dir_.sub("config.json");
    std::ofstream(path) << R"({"types": [)" << types << "]}";
    return "--config=" + path;
  };
  Start({config(R"({"name": "report", "exec": {"argv": ["/bin/true"]}})")});
  Schedule s = EverySecond("nightly");
  s.mutable_job()->set_type("report");
  s.mutable_job()->clear_params();
  ASSERT_TRUE(Create(s).ok());
  absl::SleepFor(absl::Milliseconds(1500));
  server_->Stop(SIGTERM);
  Start({config(R"({"name": "other", "exec": {"argv": ["/bin/true"]}})")});
  absl::SleepFor(absl::Milliseconds(3000));
  const Schedule stopped = Get("nightly");
  EXPECT_GE(stopped.fired_count(), 1);
  EXPECT_GE(stopped.skipped_count(), 2) << "each refused fire counted";
  EXPECT_NE(stopped.last_error().find("could not submit its job"), std::string::npos)
      << stopped.last_error();
  EXPECT_NE(stopped.last_error().find("report"), std::string::npos) << stopped.last_error();
  EXPECT_EQ(JobsOf("nightly").size(), static_cast<size_t>(stopped.fired_count()));
  // Still firing: the next fire is counted too.
  absl::SleepFor(absl::Milliseconds(1200));
  EXPECT_GT(Get("nightly").skipped_count(), stopped.skipped_count());
}

TEST_P(ScheduleTest, OverlapSkipAndQueueOneNeverRunTwoJobsAtOnce) {
  Start();
  for (auto [id, overlap] : {std::pair<std::string, Schedule::OverlapPolicy>{"skip", Schedule::SKIP},
                             {"queue-one", Schedule::QUEUE_ONE}}) {
    Schedule s = EverySecond(id, 2200);  // each job runs 2.2 s
    s.set_overlap(overlap);
    ASSERT_TRUE(Create(s).ok());
  }
  absl::SleepFor(absl::Seconds(7));
  Pause("skip");
  Pause("queue-one");
  for (const std::string id : {"skip", "queue-one"}) {
    SCOPED_TRACE(id);
    const std::multimap<int64_t, Job> jobs = JobsOf(id);
    ASSERT_GE(jobs.size(), 2u);
    std::vector<Job> ordered;
    for (const auto& [nominal, job] : jobs) ordered.push_back(job);
    for (size_t i = 1; i < ordered.size(); ++i) {
      const Job& before = ordered[i - 1];
      ASSERT_TRUE(v1::IsFinished(before.state())) << before.id();
      EXPECT_GE(v1::ToTime(ordered[i].create_time()), v1::ToTime(before.end_time()))
          << ordered[i].id() << " started while " << before.id() << " ran";
    }
    EXPECT_GT(Get(id).skipped_count(), 0);
  }
  // QUEUE_ONE submits its waiting fire as soon as the previous job ends.
  const std::multimap<int64_t, Job> queued = JobsOf("queue-one");
  auto it = queued.begin();
  const Job first = it->second;
  const Job second = (++it)->second;
  EXPECT_LT(v1::ToTime(second.create_time()) - v1::ToTime(first.end_time()), absl::Seconds(1));
}

TEST_P(ScheduleTest, PauseResumeTriggerUpdateAndDelete) {
  Start();
  Schedule paused;
  ASSERT_TRUE(Create(EverySecond("later"), &paused, /*paused=*/true).ok());
  EXPECT_TRUE(paused.paused());
  EXPECT_EQ(paused.next_fire_times_size(), 0);
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_TRUE(JobsOf("later").empty());

  // Trigger runs one now, even while paused.
  {
    grpc::ClientContext ctx;
    v1::TriggerScheduleRequest request;
    request.set_id("later");
    Job job;
    ASSERT_TRUE(schedules_->TriggerSchedule(&ctx, request, &job).ok());
    EXPECT_EQ(job.labels().at("jobstream/trigger"), "manual");
    EXPECT_EQ(job.labels().at("jobstream/schedule"), "later");
    EXPECT_EQ(Get("later").last_job_id(), job.id());
  }
  // Resumed: it fires.
  {
    grpc::ClientContext ctx;
    v1::ResumeScheduleRequest request;
    request.set_id("later");
    Schedule resumed;
    ASSERT_TRUE(schedules_->ResumeSchedule(&ctx, request, &resumed).ok());
    EXPECT_FALSE(resumed.paused());
    EXPECT_EQ(resumed.next_fire_times_size(), 5);
  }
  absl::SleepFor(absl::Milliseconds(2200));
  EXPECT_GE(Get("later").fired_count(), 1);

  // Updated to a cron expression in a time zone: its next fire times follow it.
  {
    Schedule s = EverySecond("later");
    s.clear_interval();
    s.set_cron("0 9 * * *");
    s.set_time_zone("Europe/Berlin");
    grpc::ClientContext ctx;
    v1::UpdateScheduleRequest request;
    *request.mutable_schedule() = s;
    Schedule updated;
    grpc::Status st = schedules_->UpdateSchedule(&ctx, request, &updated);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(updated.cron(), "0 9 * * *");
    EXPECT_FALSE(updated.has_interval());
    ASSERT_EQ(updated.next_fire_times_size(), 5);
    for (const auto& t : updated.next_fire_times()) {
      const absl::CivilSecond local =
          absl::ToCivilSecond(v1::ToTime(t), [] {
            absl::TimeZone z;
            absl::LoadTimeZone("Europe/Berlin", &z);
            return z;
          }());
      EXPECT_EQ(local.hour(), 9);
      EXPECT_EQ(local.minute(), 0);
    }
  }
  const absl::Time updated_at = absl::Now();  // no fire is due after this any more
  // Listed, then deleted: gone, its jobs stay.
  {
    grpc::ClientContext ctx;
    v1::ListSchedulesResponse listed;
    ASSERT_TRUE(schedules_->ListSchedules(&ctx, v1::ListSchedulesRequest(), &listed).ok());
    ASSERT_EQ(listed.schedules_size(), 1);
    EXPECT_EQ(listed.schedules(0).id(), "later");
  }
  const size_t jobs_before = JobsOf("later").size();
  ASSERT_GE(jobs_before, 2u) << "the trigger's and at least one fire's";
  {
    grpc::ClientContext ctx;
    v1::DeleteScheduleRequest request;
    request.set_id("later");
    v1::DeleteScheduleResponse response;
    ASSERT_TRUE(schedules_->DeleteSchedule(&ctx, request, &response).ok());
  }
  grpc::ClientContext ctx;
  v1::GetScheduleRequest get;
  get.set_id("later");
  Schedule gone;
  EXPECT_EQ(schedules_->GetSchedule(&ctx, get, &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  // A fire that was due before the update may still be submitting its job as the update
  // lands (it is that fire time's one job, made late, not a new fire); none due after it
  // ever comes, and the schedule's jobs stay.
  absl::SleepFor(absl::Milliseconds(1500));
  const std::multimap<int64_t, Job> after = JobsOf("later");
  EXPECT_GE(after.size(), jobs_before);
  for (const auto& [nominal, job] : after) {
    EXPECT_LE(nominal, absl::ToUnixSeconds(updated_at))
        << job.id() << " fired for " << job.labels().at("jobstream/fire-time")
        << ", after the update";
  }
}

TEST_P(ScheduleTest, BadInputIsRefusedNamingTheFieldAndNothingIsWritten) {
  Start();
  struct Bad {
    std::function<void(Schedule&)> change;
    const char* message;
  };
  const std::vector<Bad> cases = {
      {[](Schedule& s) { s.clear_interval(); s.set_cron("61 * * * *"); },
       "schedule.cron: cron minute field \"61\": 61 is out of range 0-59"},
      {[](Schedule& s) { s.clear_interval(); s.set_cron("0 9 * * *"); s.set_time_zone("Mars/Base"); },
       "schedule.time_zone \"Mars/Base\" is not a time zone this server knows"},
      {[](Schedule& s) { s.set_cron("* * * * *"); }, "exactly one of schedule.cron and schedule.interval"},
      {[](Schedule& s) { s.mutable_job()->set_type("no.such.type"); }, "schedule.job: "},
      {[](Schedule& s) { s.mutable_job()->clear_type(); }, "schedule.job.type is required"},
      {[](Schedule& s) { s.set_id("Bad Id"); }, "schedule.id \"Bad Id\" must be"},
      {[](Schedule& s) { s.mutable_jitter()->set_seconds(7200); }, "schedule.jitter"},
      {[](Schedule& s) { s.set_catch_up_limit(5000); }, "schedule.catch_up_limit 5000 must be 0 to 1000"},
      {[](Schedule& s) { s.set_overlap(static_cast<Schedule::OverlapPolicy>(9)); }, "schedule.overlap 9"},
      {[](Schedule& s) { (*s.mutable_job()->mutable_labels())["jobstream/schedule"] = "x"; },
       "keys starting \"jobstream/\" are the server's own"},
      {[](Schedule& s) { s.mutable_interval()->set_seconds(0); }, "schedule.interval must be whole seconds"},
      {[](Schedule& s) { s.mutable_job()->set_concurrency_key("tab\there"); },
       "schedule.job: concurrency_key \"tab\\there\" must be printable ASCII"},
      {[](Schedule& s) { s.mutable_job()->set_concurrency_key(std::string(129, 'k')); },
       "schedule.job: concurrency_key has 129 characters; at most 128"},
  };
  for (const Bad& bad : cases) {
    Schedule s = EverySecond("bad");
    bad.change(s);
    grpc::Status st = Create(s);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad.message;
    EXPECT_NE(st.error_message().find(bad.message), std::string::npos)
        << st.error_message() << " wants " << bad.message;
  }
  grpc::ClientContext ctx;
  v1::ListSchedulesResponse listed;
  ASSERT_TRUE(schedules_->ListSchedules(&ctx, v1::ListSchedulesRequest(), &listed).ok());
  EXPECT_EQ(listed.schedules_size(), 0);
  // A taken id, and one that does not exist.
  ASSERT_TRUE(Create(EverySecond("once"), nullptr, true).ok());
  EXPECT_EQ(Create(EverySecond("once")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  grpc::ClientContext get_ctx;
  v1::GetScheduleRequest get;
  get.set_id("nothing");
  Schedule none;
  grpc::Status missing = schedules_->GetSchedule(&get_ctx, get, &none);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "no schedule \"nothing\"");
}

// The CLI's schedule commands: what they print and their exit codes (0, 1 refused by the
// server, 3 usage).
TEST_P(ScheduleTest, TheCliMakesListsTriggersAndRemovesSchedules) {
  Start();
  auto cli = [&](const std::string& args, std::string* out = nullptr) {
    auto [code, text] = testing::RunCommand(testing::BinaryPath("client/jobstream") +
                                            " --server=" + server_->address() + " " + args +
                                            " 2>&1");
    if (out) *out = text;
    return code;
  };
  std::string out;
  ASSERT_EQ(cli("schedule create nightly --cron='30 2 * * *' --time_zone=Asia/Tokyo "
                "--type=demo.steps --params='{\"steps\":[\"a\"]}' --labels=team=data "
                "--overlap=queue_one --catch_up=run_once --jitter=30s --concurrency_key=acme --json",
                &out),
            0)
      << out;
  Schedule made;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &made).ok()) << out;
  EXPECT_EQ(made.overlap(), Schedule::QUEUE_ONE);
  EXPECT_EQ(made.catch_up(), Schedule::RUN_ONCE);
  EXPECT_EQ(made.jitter().seconds(), 30);
  EXPECT_EQ(made.job().labels().at("team"), "data");
  EXPECT_EQ(made.job().concurrency_key(), "acme");
  ASSERT_GT(made.next_fire_times_size(), 0);
  EXPECT_EQ(absl::ToCivilHour(v1::ToTime(made.next_fire_times(0)), absl::UTCTimeZone()).hour(),
            17);  // 02:30 in Tokyo

  ASSERT_EQ(cli("schedule create tick --every=1s --type=demo.steps --paused --json", &out), 0)
      << out;
  ASSERT_EQ(cli("schedule list --json", &out), 0) << out;
  EXPECT_NE(out.find("\"id\":\"nightly\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"id\":\"tick\""), std::string::npos) << out;
  ASSERT_EQ(cli("schedule trigger tick --json", &out), 0) << out;
  EXPECT_NE(out.find("\"jobstream/trigger\":\"manual\""), std::string::npos) << out;
  ASSERT_EQ(cli("schedule resume tick --json", &out), 0) << out;
  ASSERT_EQ(cli("schedule pause tick --json", &out), 0) << out;
  EXPECT_NE(out.find("\"paused\":true"), std::string::npos) << out;
  ASSERT_EQ(cli("schedule update tick --every=1h --type=demo.steps --json", &out), 0) << out;
  EXPECT_NE(out.find("\"interval\":\"3600s\""), std::string::npos) << out;
  ASSERT_EQ(cli("schedule delete tick", &out), 0) << out;
  EXPECT_EQ(cli("schedule get tick", &out), 1) << out;
  EXPECT_NE(out.find("NOT_FOUND: no schedule \"tick\""), std::string::npos) << out;

  // Refused by the server (1), or before it is asked (3), each saying why.
  EXPECT_EQ(cli("schedule create bad --cron='* * *' --type=demo.steps", &out), 1);
  EXPECT_NE(out.find("needs 5 fields"), std::string::npos) << out;
  EXPECT_EQ(cli("schedule create bad --type=demo.steps", &out), 3);
  EXPECT_NE(out.find("one of --cron and --every"), std::string::npos) << out;
  EXPECT_EQ(cli("schedule create bad --every=soon --type=demo.steps", &out), 3);
  EXPECT_NE(out.find("--every takes a duration"), std::string::npos) << out;
  EXPECT_EQ(cli("schedule create bad --every=1m --type=demo.steps --overlap=sometimes", &out), 3);
  EXPECT_EQ(cli("schedule frobnicate x", &out), 3);
  EXPECT_EQ(cli("schedule get", &out), 3);
}

}  // namespace
}  // namespace jobstream
