// The store-neutral decisions of a schedule: timetables, catch-up after downtime,
// overlap with the previous job, jitter.
#include "server/schedules/planner.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "server/schedules/timetable.h"

namespace jobstream::schedules {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

v1::Schedule Every(int seconds, v1::Schedule::CatchUpPolicy catch_up = v1::Schedule::SKIP_MISSED,
                   v1::Schedule::OverlapPolicy overlap = v1::Schedule::ALLOW) {
  v1::Schedule s;
  s.set_id("every");
  s.mutable_interval()->set_seconds(seconds);
  s.mutable_start_time()->set_seconds(absl::ToUnixSeconds(kT0));
  s.set_catch_up(catch_up);
  s.set_overlap(overlap);
  return s;
}

Timetable TableOf(const v1::Schedule& s) {
  absl::StatusOr<Timetable> t = Timetable::Of(s, kT0 - absl::Seconds(5));
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

std::vector<int64_t> Offsets(const std::vector<absl::Time>& times) {
  std::vector<int64_t> out;
  for (absl::Time t : times) out.push_back(absl::ToInt64Seconds(t - kT0));
  return out;
}

FirePlan Plan(const v1::Schedule& s, absl::Time handled_until, absl::Duration now_offset,
              bool previous_live = false, std::optional<absl::Time> pending = std::nullopt) {
  FireState state;
  state.handled_until = handled_until;
  state.pending = pending;
  return PlanFires(s, TableOf(s), state, kT0 + now_offset, previous_live);
}

TEST(TimetableTest, AnIntervalFiresFromItsStartTimeInWholeSteps) {
  const Timetable t = TableOf(Every(10));
  EXPECT_EQ(*t.Next(kT0 - absl::Hours(1)), kT0);
  EXPECT_EQ(*t.Next(kT0), kT0 + absl::Seconds(10));
  EXPECT_EQ(*t.Next(kT0 + absl::Seconds(10.5)), kT0 + absl::Seconds(20));
  // Without a start time: one interval after creation, on a whole second.
  v1::Schedule s = Every(60);
  s.clear_start_time();
  absl::StatusOr<Timetable> created = Timetable::Of(s, kT0 + absl::Milliseconds(700));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(*created->Next(kT0), kT0 + absl::Seconds(60));
}

TEST(TimetableTest, BadTimetablesAreRefusedNamingTheField) {
  auto error = [](const v1::Schedule& s) {
    absl::StatusOr<Timetable> t = Timetable::Of(s, kT0);
    EXPECT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(t.status().message());
  };
  v1::Schedule neither;
  EXPECT_EQ(error(neither), "a schedule needs exactly one of schedule.cron and schedule.interval");
  v1::Schedule both = Every(5);
  both.set_cron("* * * * *");
  EXPECT_NE(error(both).find("exactly one"), std::string::npos);
  v1::Schedule cron;
  cron.set_cron("61 * * * *");
  EXPECT_EQ(error(cron), "schedule.cron: cron minute field \"61\": 61 is out of range 0-59");
  cron.set_cron("0 0 30 2 *");
  EXPECT_NE(error(cron).find("never fires"), std::string::npos);
  cron.set_cron("0 9 * * *");
  for (const char* zone : {"Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "localtime",
                           "Europe/Berlin\n"}) {
    cron.set_time_zone(zone);
    EXPECT_NE(error(cron).find("is not a time zone this server knows"), std::string::npos) << zone;
  }
  cron.set_time_zone("Europe/Berlin");
  EXPECT_TRUE(Timetable::Of(cron, kT0).ok());
  cron.mutable_start_time()->set_seconds(1);
  EXPECT_NE(error(cron).find("schedule.start_time is for an interval"), std::string::npos);
  v1::Schedule interval = Every(0);
  EXPECT_EQ(error(interval), "schedule.interval must be whole seconds from 1s to 366 days");
  interval.mutable_interval()->set_seconds(1);
  interval.mutable_interval()->set_nanos(500000000);
  EXPECT_NE(error(interval).find("whole seconds"), std::string::npos);
  interval = Every(367 * 86400);
  EXPECT_NE(error(interval).find("whole seconds"), std::string::npos);
  interval = Every(5);
  interval.set_time_zone("UTC");
  EXPECT_NE(error(interval).find("schedule.time_zone is for a cron expression"), std::string::npos);
  interval = Every(5);
  interval.mutable_start_time()->set_seconds(absl::ToUnixSeconds(kT0) + 400 * 86400);
  EXPECT_NE(error(interval).find("schedule.start_time must be"), std::string::npos);
}

TEST(PlannerTest, OnTimeFiresOneAtATimeAndSaysWhenToLookAgain) {
  const v1::Schedule s = Every(1);
  FirePlan early = Plan(s, kT0, absl::Milliseconds(500));
  EXPECT_TRUE(early.submit.empty());
  EXPECT_EQ(early.skipped, 0);
  EXPECT_EQ(*early.wake, kT0 + absl::Seconds(1));
  FirePlan on_time = Plan(s, kT0, absl::Milliseconds(1200));
  EXPECT_EQ(Offsets(on_time.submit), std::vector<int64_t>{1});
  EXPECT_EQ(on_time.state.handled_until, kT0 + absl::Seconds(1));
  EXPECT_EQ(*on_time.wake, kT0 + absl::Seconds(2));
}

TEST(PlannerTest, FiresDecidedButNotYetSubmittedWakeItAtOnceEvenIfPausedSince) {
  v1::Schedule s = Every(60);
  FireState state;
  state.handled_until = kT0;
  const absl::Time now = kT0 + absl::Seconds(10);
  EXPECT_EQ(*WakeOf(s, TableOf(s), state, now), kT0 + absl::Seconds(60));
  state.submitting = {kT0};
  EXPECT_EQ(*WakeOf(s, TableOf(s), state, now), now);
  s.set_paused(true);
  EXPECT_EQ(*WakeOf(s, TableOf(s), state, now), now);
  state.submitting.clear();
  EXPECT_FALSE(WakeOf(s, TableOf(s), state, now).has_value());
}

TEST(PlannerTest, AfterDowntimeEachCatchUpPolicyRunsWhatItSays) {
  const absl::Duration now = absl::Milliseconds(10500);  // fires 1..10 are due
  FirePlan skip = Plan(Every(1, v1::Schedule::SKIP_MISSED), kT0, now);
  EXPECT_EQ(Offsets(skip.submit), std::vector<int64_t>{10});  // on time: 0.5 s late
  EXPECT_EQ(skip.skipped, 9);
  FirePlan once = Plan(Every(1, v1::Schedule::RUN_ONCE), kT0, now);
  EXPECT_EQ(Offsets(once.submit), std::vector<int64_t>{10});
  EXPECT_EQ(once.skipped, 9);
  FirePlan all = Plan(Every(1, v1::Schedule::RUN_ALL), kT0, now);
  EXPECT_EQ(Offsets(all.submit), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(all.skipped, 0);
  v1::Schedule limited = Every(1, v1::Schedule::RUN_ALL);
  limited.set_catch_up_limit(3);
  FirePlan newest = Plan(limited, kT0, now);
  EXPECT_EQ(Offsets(newest.submit), (std::vector<int64_t>{8, 9, 10}));
  EXPECT_EQ(newest.skipped, 7);
  for (const FirePlan* p : {&skip, &once, &all, &newest}) {
    EXPECT_EQ(p->state.handled_until, kT0 + absl::Seconds(10));
  }
  // The newest fire more than a minute late is missed too.
  FirePlan late = Plan(Every(3600, v1::Schedule::SKIP_MISSED), kT0, absl::Hours(2) + absl::Minutes(5));
  EXPECT_TRUE(late.submit.empty());
  EXPECT_EQ(late.skipped, 2);
  FirePlan late_once = Plan(Every(3600, v1::Schedule::RUN_ONCE), kT0, absl::Hours(2) + absl::Minutes(5));
  EXPECT_EQ(Offsets(late_once.submit), std::vector<int64_t>{7200});
  // Down for a week with a fire each second: the walk is bounded, the newest still runs.
  FirePlan week = Plan(Every(1, v1::Schedule::RUN_ONCE), kT0, absl::Hours(24 * 7) + absl::Milliseconds(100));
  EXPECT_EQ(Offsets(week.submit), std::vector<int64_t>{7 * 86400});
  EXPECT_GT(week.skipped, 80000);
}

TEST(PlannerTest, OverlapWithAnUnfinishedPreviousJob) {
  const absl::Duration now = absl::Milliseconds(3500);  // fires 1..3 due
  // SKIP: nothing while the previous runs; within a catch-up, only the first.
  FirePlan skip = Plan(Every(1, v1::Schedule::RUN_ALL, v1::Schedule::SKIP), kT0, now, true);
  EXPECT_TRUE(skip.submit.empty());
  EXPECT_EQ(skip.skipped, 3);
  FirePlan first = Plan(Every(1, v1::Schedule::RUN_ALL, v1::Schedule::SKIP), kT0, now, false);
  EXPECT_EQ(Offsets(first.submit), std::vector<int64_t>{1});
  EXPECT_EQ(first.skipped, 2);
  // QUEUE_ONE: the newest waits, and is looked at again soon.
  const v1::Schedule queue = Every(1, v1::Schedule::RUN_ALL, v1::Schedule::QUEUE_ONE);
  FirePlan waiting = Plan(queue, kT0, now, true);
  EXPECT_TRUE(waiting.submit.empty());
  ASSERT_TRUE(waiting.state.pending.has_value());
  EXPECT_EQ(*waiting.state.pending, kT0 + absl::Seconds(3));
  EXPECT_EQ(waiting.skipped, 2);
  EXPECT_EQ(*waiting.wake, kT0 + now + kPendingPoll);
  // Still running: it keeps waiting; a newer fire replaces it.
  FirePlan replaced = Plan(queue, kT0 + absl::Seconds(3), absl::Milliseconds(4100), true,
                           kT0 + absl::Seconds(3));
  EXPECT_TRUE(replaced.submit.empty());
  EXPECT_EQ(*replaced.state.pending, kT0 + absl::Seconds(4));
  EXPECT_EQ(replaced.skipped, 1);
  // The previous ended: the waiting fire goes.
  FirePlan released = Plan(queue, kT0 + absl::Seconds(4), absl::Milliseconds(4300), false,
                           kT0 + absl::Seconds(4));
  EXPECT_EQ(Offsets(released.submit), std::vector<int64_t>{4});
  EXPECT_FALSE(released.state.pending.has_value());
  // ALLOW: everything.
  FirePlan allow = Plan(Every(1, v1::Schedule::RUN_ALL, v1::Schedule::ALLOW), kT0, now, true);
  EXPECT_EQ(Offsets(allow.submit), (std::vector<int64_t>{1, 2, 3}));
}

TEST(PlannerTest, JitterDelaysEachFireByAFixedAmountWithinTheBound) {
  const absl::Duration jitter = absl::Seconds(30);
  std::set<int64_t> seen;
  for (int i = 0; i < 200; ++i) {
    const absl::Time nominal = kT0 + absl::Minutes(i);
    const absl::Duration d = JitterOf("nightly", nominal, jitter);
    EXPECT_GE(d, absl::ZeroDuration());
    EXPECT_LE(d, jitter);
    EXPECT_EQ(d, JitterOf("nightly", nominal, jitter));  // the same on every server
    seen.insert(absl::ToInt64Milliseconds(d));
  }
  EXPECT_GT(seen.size(), 150u);
  EXPECT_EQ(JitterOf("nightly", kT0, absl::ZeroDuration()), absl::ZeroDuration());
  // A fire is due at its nominal time plus its jitter.
  v1::Schedule s = Every(60);
  s.mutable_jitter()->set_seconds(30);
  const absl::Duration delay = JitterOf(s.id(), kT0 + absl::Seconds(60), jitter);
  EXPECT_TRUE(Plan(s, kT0, absl::Seconds(60) + delay - absl::Milliseconds(1)).submit.empty());
  EXPECT_EQ(Offsets(Plan(s, kT0, absl::Seconds(60) + delay).submit), std::vector<int64_t>{60});
}

}  // namespace
}  // namespace jobstream::schedules
