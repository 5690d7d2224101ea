// PlanFires: what a schedule does now — which nominal fire times to submit, which to
// skip, and when to look again. Store-neutral: the schedule's store reads and writes the
// state; the scheduler submits the jobs; every decision about catch-up and overlap is here.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "jobstream/v1/schedules.pb.h"
#include "server/schedules/timetable.h"

namespace jobstream::schedules {

// A fire is late when it is due more than this long ago: the newest due fire runs under
// SKIP_MISSED while it is less late than this.
inline constexpr absl::Duration kMisfireGrace = absl::Minutes(1);

// What the store keeps about a schedule's progress through its timetable.
struct FireState {
  // Fire times up to here have been handled (submitted or skipped).
  absl::Time handled_until;
  // QUEUE_ONE: the fire waiting for the previous job to end.
  std::optional<absl::Time> pending;
  // Fire times decided to run, written before their jobs are submitted (see
  // ScheduleRecord.submitting_ms); submitted before anything is planned again.
  std::vector<absl::Time> submitting;
};

struct FirePlan {
  // Nominal fire times to submit now, oldest first.
  std::vector<absl::Time> submit;
  // Fires skipped by this plan (catch-up or overlap).
  int64_t skipped = 0;
  FireState state;
  // When to plan again: the next fire's due time (nominal + jitter), or, while a fire
  // waits for the previous job (QUEUE_ONE), soon. nullopt: nothing will come.
  std::optional<absl::Time> wake;
};

// `previous_live`: the job of the schedule's last fire is still QUEUED or RUNNING.
FirePlan PlanFires(const v1::Schedule& schedule, const Timetable& timetable,
                   const FireState& state, absl::Time now, bool previous_live);

// How often a schedule with a waiting QUEUE_ONE fire looks at its previous job.
inline constexpr absl::Duration kPendingPoll = absl::Milliseconds(250);

// RUN_ALL's catch_up_limit when the schedule gives none.
inline constexpr int kDefaultCatchUpLimit = 100;

// When to look at a schedule next (FirePlan::wake): now while fires decided before are
// still to be submitted (even if paused since: they were decided before); else the due
// time (nominal + jitter) of its first fire after state.handled_until, or soon while a fire
// waits; nullopt if paused or no fire will come.
std::optional<absl::Time> WakeOf(const v1::Schedule& schedule, const Timetable& timetable,
                                 const FireState& state, absl::Time now);

}  // namespace jobstream::schedules
