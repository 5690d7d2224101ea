// RetryJob: an ended job run again under its own id (JobManager's, on RocksDB; the
// PostgreSQL manager's is a Transition in pg_manager.cc), or replayed as a new job (any
// store's, through Get and Submit). transitions.h decides what a retry changes.
#include "jobstream/v1/job_states.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/transitions.h"
#include "server/jobs/validation.h"
#include "server/watch/event_hub.h"

namespace jobstream::jobs {

using storage::Batch;
using v1::Job;
using v1::JobEvent;

void JobBackend::Replay(const std::string& job_id, const google::protobuf::Struct* params,
                        v1::OperatorAction action, const auth::Scope& scope, JobCallback done) {
  auto job = Get(job_id, scope);
  if (!job.ok()) return done(job.status());
  if (job->has_batch()) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is a batch's parent; submit a new batch, or replay its children")));
  }
  if (!v1::IsFinished(job->state())) {
    return done(StateError(*job, "only an ended job can be replayed"));
  }
  action.set_sequence(1);  // the new job's CREATED
  // In the old job's tenant, whoever asks (an admin may replay any tenant's job).
  SubmitMade(ReplayRequest(*job, params), auth::Scope::Tenant(job->tenant()),
             [job_id, action](Job& made) {
               made.set_replay_of(job_id);
               *made.mutable_last_action() = action;
             },
             std::move(done));
}

void JobManager::Retry(const std::string& job_id, const v1::OperatorAction& action,
                       const auth::Scope& scope, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    if (!store_failure_.ok()) return done(store_failure_);
    const bool held = live_.contains(job_id);
    auto loaded = Load(job_id, /*with_params=*/false);
    if (absl::IsNotFound(loaded.status())) {
      error = watch::JobNotFound(*store_, job_id, scope);
    } else if (!loaded.ok()) {
      error = loaded.status();
    } else {
      LiveJob& live = **loaded;
      if (!scope.Sees(live.job)) {
        error = watch::NoSuchJob(job_id);
      } else {
        error = CheckRetry(live.job);
      }
      if (error.ok() && !live.job.parent_id().empty()) {
        // A child of a batch still running would be counted twice by its parent.
        auto parent = live_.find(live.job.parent_id());
        absl::StatusOr<Job> stored = parent != live_.end()
                                         ? absl::StatusOr<Job>(parent->second.job)
                                         : store_->GetJob(live.job.parent_id());
        if (stored.ok() && !v1::IsFinished(stored->state())) error = BatchRunning(live.job);
      }
      if (error.ok()) {
        const absl::Time now = absl::Now();
        v1::OperatorAction made = action;
        made.set_sequence(live.job.last_sequence() + 1);
        RetryEnded(live.job, made, now);
        Batch batch;
        SetQueueKey(live, batch);
        error = Commit(live, JobEvent::RETRIED, std::move(batch), done);
        if (error.ok()) {
          Enqueue(live);
          return;
        }
      }
      // Read in only to look (or its change not written): the store holds it as it was.
      if (!held) live_.erase(job_id);
    }
  }
  done(error);
}

}  // namespace jobstream::jobs
