#include "server/schedules/planner.h"

#include <algorithm>
#include <deque>

#include "jobstream/v1/job_states.h"

namespace jobstream::schedules {
namespace {

// A timetable of one fire a second down for days would be millions of fire times to walk;
// past this many, the walk starts again a day before now (older fires are skipped).
constexpr int64_t kMaxWalk = 200000;

}  // namespace

FirePlan PlanFires(const v1::Schedule& schedule, const Timetable& timetable,
                   const FireState& state, absl::Time now, bool previous_live) {
  const absl::Duration jitter = v1::ToDuration(schedule.jitter());
  auto due_time = [&](absl::Time nominal) {
    return nominal + JitterOf(schedule.id(), nominal, jitter);
  };
  const size_t keep = schedule.catch_up() == v1::Schedule::RUN_ALL
                          ? (schedule.catch_up_limit() > 0 ? schedule.catch_up_limit()
                                                           : kDefaultCatchUpLimit)
                          : 1;
  FirePlan plan;
  plan.state = state;

  // The fire times due now, newest `keep` of them; the rest only counted.
  std::deque<absl::Time> due;
  int64_t due_count = 0;
  std::optional<absl::Time> next = timetable.Next(state.handled_until);
  for (int64_t walked = 0; next && due_time(*next) <= now; ++walked) {
    if (walked == kMaxWalk) {
      // Everything up to a day ago counts as handled (and is not counted).
      plan.state.handled_until = std::max(plan.state.handled_until, now - absl::Hours(24));
      next = timetable.Next(plan.state.handled_until);
      if (!next || due_time(*next) > now) break;
    }
    ++due_count;
    due.push_back(*next);
    if (due.size() > keep) due.pop_front();
    plan.state.handled_until = *next;
    next = timetable.Next(*next);
  }

  // Catch-up: which of the due fires run.
  std::vector<absl::Time> fires;
  if (!due.empty()) {
    const absl::Time newest = due.back();
    switch (schedule.catch_up()) {
      case v1::Schedule::RUN_ONCE:
        fires.push_back(newest);
        break;
      case v1::Schedule::RUN_ALL:
        fires.assign(due.begin(), due.end());
        break;
      default:  // SKIP_MISSED
        if (now - due_time(newest) < kMisfireGrace) fires.push_back(newest);
        break;
    }
  }
  plan.skipped = due_count - static_cast<int64_t>(fires.size());

  // Overlap: a fire while the previous job is unfinished. A job this plan submits is
  // unfinished too, so each later fire of the same plan overlaps it.
  bool live = previous_live;
  switch (schedule.overlap()) {
    case v1::Schedule::ALLOW:
      plan.submit = std::move(fires);
      break;
    case v1::Schedule::QUEUE_ONE: {
      if (!live && plan.state.pending) {
        plan.submit.push_back(*plan.state.pending);
        plan.state.pending.reset();
        live = true;
      }
      for (absl::Time t : fires) {
        if (!live) {
          plan.submit.push_back(t);
          live = true;
          continue;
        }
        if (plan.state.pending) ++plan.skipped;  // replaced by the newer
        plan.state.pending = t;
      }
      break;
    }
    default:  // SKIP
      for (absl::Time t : fires) {
        if (live) {
          ++plan.skipped;
          continue;
        }
        plan.submit.push_back(t);
        live = true;
      }
      break;
  }

  plan.wake = WakeOf(schedule, timetable, plan.state, now);
  return plan;
}

std::optional<absl::Time> WakeOf(const v1::Schedule& schedule, const Timetable& timetable,
                                 const FireState& state, absl::Time now) {
  if (!state.submitting.empty()) return now;
  if (schedule.paused()) return std::nullopt;
  std::optional<absl::Time> wake;
  if (std::optional<absl::Time> next = timetable.Next(state.handled_until)) {
    wake = *next + JitterOf(schedule.id(), *next, v1::ToDuration(schedule.jitter()));
  }
  if (state.pending) {
    const absl::Time soon = now + kPendingPoll;
    wake = wake ? std::min(*wake, soon) : soon;
  }
  return wake;
}

}  // namespace jobstream::schedules
