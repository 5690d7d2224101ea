// PgJobManager's job graphs (graph.h decides how a WAITING job moves). A Submit with
// depends_on is one transaction that locks its dependencies (PgStore::InsertWaitingJob).
// The jobs waiting for one that ended are moved by the leading server — at once, as the
// feed shows it the terminal event, many ended jobs to a transaction — and, each second,
// it looks for ended jobs that still have jobs waiting for them (a move cut short by a
// crash or a change of leader): a move is idempotent, so two servers moving the same
// job, or one moving it twice, changes it once.
#include <algorithm>

#include "jobstream/v1/job_states.h"
#include "server/jobs/graph.h"
#include "server/jobs/pg_manager.h"

namespace jobstream::jobs {

using v1::Job;
using v1::JobEvent;

void PgJobManager::SubmitWaiting(const v1::SubmitRequest& request, const auth::Scope& scope,
                                 Job job, absl::Time now, JobCallback done) {
  auto inserted = store_->InsertWaitingJob(
      job, request.params(),
      [&](const std::vector<Job>& found) -> absl::StatusOr<std::vector<JobEvent>> {
        for (int i = 0; i < request.depends_on_size(); ++i) {
          const std::string& id = request.depends_on(i);
          auto it = std::find_if(found.begin(), found.end(),
                                 [&](const Job& d) { return d.id() == id; });
          if (it == found.end() || !scope.Sees(*it)) return DependencyNotFound(i, id);
        }
        Job created;
        const JobEvent::Type then = StartWaiting(job, found, now, &created);
        std::vector<JobEvent> events(then == JobEvent::TYPE_UNSPECIFIED ? 1 : 2);
        for (JobEvent& e : events) *e.mutable_time() = v1::ToProto(now);
        events[0].set_type(JobEvent::CREATED);
        *events[0].mutable_status() = created;
        if (events.size() == 2) {
          events[1].set_type(then);
          *events[1].mutable_status() = job;
        }
        return events;
      },
      UniqueHolds(now));
  if (!inserted.ok()) return done(inserted.status());
  if (inserted->deduplicated) return done(Deduplicated(inserted->job.id()));
  if (!inserted->created) return done(Get(inserted->job.id(), auth::Scope::Everything()));
  if (inserted->job.state() == Job::QUEUED) {
    absl::MutexLock lock(&mu_);
    ++queued_[scope.tenant].count;
  }
  JobEvent logged;
  logged.set_type(JobEvent::CREATED);
  logged.set_job_id(inserted->job.id());
  *logged.mutable_status() = inserted->job;
  RecordStateChange(logged);
  *inserted->job.mutable_params() = request.params();
  done(std::move(inserted->job));
}

void PgJobManager::MoveDependents(std::vector<std::string>& ended) {
  auto moved = store_->MoveDependents(
      ended, [now = absl::Now()](Job& job, const std::vector<const Job*>& ends,
                                 std::vector<JobEvent>& events) {
        const JobEvent::Type type = DependenciesEnded(job, ends, now);
        if (type == JobEvent::TYPE_UNSPECIFIED) return;
        events.push_back(EventOf(type, now));
      });
  // A failure is made good by the sweep, within a second.
  if (moved.ok()) {
    for (const JobEvent& e : *moved) RecordStateChange(e);
  }
}

void PgJobManager::SweepDependencies() {
  auto ended = store_->EndedDependencies(256);
  if (ended.ok() && !ended->empty()) MoveDependents(*ended);
}

}  // namespace jobstream::jobs
