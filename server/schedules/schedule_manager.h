// ScheduleManager: the ScheduleService's calls and the scheduler's fires, over either
// store. Checks every request (INVALID_ARGUMENT naming the field, nothing written), keeps
// a schedule's state in the store, and submits its jobs through the JobBackend, each fire
// with a request id of its own so a fire retried after a crash finds its job.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "jobstream/v1/schedules.pb.h"
#include "server/auth/scope.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/job_types.h"
#include "server/jobs/validation.h"
#include "server/schedules/schedule_store.h"
#include "server/storage/event_reader.h"
#include "server/util/task_pool.h"

namespace jobstream::schedules {

class ScheduleManager {
 public:
  // `reader` is the jobs' store, read for the state of a schedule's last job (the record
  // alone: no params, no deliveries); `jobs` submits.
  ScheduleManager(ScheduleStore* store, jobs::JobBackend* jobs,
                  const storage::EventReader* reader, const jobs::JobTypes* types,
                  jobs::Limits limits)
      : store_(store), jobs_(jobs), reader_(reader), types_(types), limits_(limits) {}

  // A scoped caller's schedules are its tenant's; ids are per tenant.
  absl::StatusOr<v1::Schedule> Create(const v1::CreateScheduleRequest& request,
                                      const auth::Scope& scope);
  absl::StatusOr<v1::Schedule> Get(const std::string& id, const auth::Scope& scope) const;
  absl::StatusOr<v1::ListSchedulesResponse> List(const v1::ListSchedulesRequest& request,
                                                 const auth::Scope& scope) const;
  absl::StatusOr<v1::Schedule> Update(const v1::UpdateScheduleRequest& request,
                                      const auth::Scope& scope);
  absl::StatusOr<v1::Schedule> SetPaused(const std::string& id, bool paused,
                                         const auth::Scope& scope);
  absl::Status Delete(const std::string& id, const auth::Scope& scope);
  absl::StatusOr<v1::Job> Trigger(const std::string& id, const auth::Scope& scope);

  // The scheduler's turn: fires the schedules due at `now`, as many as one read of the
  // store gives. Returns whether more may be due (that read was full).
  bool FireDue(absl::Time now);

 private:
  // The stored schedule a request names, checked against the caller's scope.
  absl::StatusOr<StoredSchedule> Find(const std::string& id, const auth::Scope& scope) const;
  // The settable fields of `in`, checked, onto `out` (id, tenant and counters untouched).
  absl::Status SetFields(const v1::Schedule& in, absl::Time now, v1::Schedule* out) const;
  // The schedule as the API shows it, with what is computed on read.
  v1::Schedule Show(const StoredSchedule& s, absl::Time now) const;
  // Reads, changes and writes again until no other write came between.
  absl::StatusOr<StoredSchedule> Change(const std::string& id, const auth::Scope& scope,
                                        const std::function<absl::Status(StoredSchedule&)>& fn);
  absl::StatusOr<v1::Job> Submit(const v1::Schedule& s, absl::Time nominal, bool manual);
  // The state of the schedule's last job; nullopt if it has none or it is gone.
  std::optional<v1::Job::State> LastJobState(const v1::Schedule& s) const;
  // A due schedule's turn: plans its fires and writes the plan (Plan), then submits the
  // fires it decided (SubmitDecided).
  void Fire(StoredSchedule s, absl::Time now);
  // Plans and writes what was planned, the fires to submit included, before any is
  // submitted. Re-reads and plans again when another write came between. False: nothing
  // to submit (paused, gone, or the store refused).
  bool Plan(StoredSchedule& s, absl::Time now);
  void SubmitDecided(StoredSchedule s, absl::Time now);

  ScheduleStore* const store_;
  jobs::JobBackend* const jobs_;
  const storage::EventReader* const reader_;
  const jobs::JobTypes* const types_;
  const jobs::Limits limits_;
  // Fires run side by side, 64 at a time: each waits on its job's commit and its own
  // write, and concurrent writes share their syncs (10,000 schedules due at one minute:
  // bench/RESULTS.md). Made at the first fire: a server without schedules has no such
  // threads.
  std::unique_ptr<util::TaskPool> fire_pool_;
};

}  // namespace jobstream::schedules
