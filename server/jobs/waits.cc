// JobManager, part four: WaitJob, the long-poll. A wait is registered under the lock
// after reading the job from the store, and a finished job's waits are taken under the
// lock after its terminal event is written: so a wait either sees the job finished or is
// there to be answered when it finishes — never neither.
#include "server/jobs/ids.h"
#include "server/jobs/job_manager.h"

namespace jobstream::jobs {

std::shared_ptr<JobWait> JobManager::WaitJob(const std::string& job_id, const auth::Scope& scope,
                                             absl::Duration timeout, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) {
    done(s);
    return nullptr;
  }
  if (absl::Status s = ValidateWaitTimeout(timeout); !s.ok()) {
    done(s);
    return nullptr;
  }
  if (timeout > absl::ZeroDuration()) {
    absl::MutexLock lock(&mu_);
    auto job = store_->GetJob(job_id);
    if (job.ok() && scope.Sees(*job) && !v1::IsFinished(job->state()) && !stop_running_) {
      std::shared_ptr<JobWait> wait = waits_.Add(job_id, std::move(done), absl::Now() + timeout);
      WakeDispatcherBy(*waits_.NextDue());
      return wait;
    }
  }
  done(Get(job_id, scope));  // finished, unknown, not the caller's, or no time to wait
  return nullptr;
}

void JobManager::AbandonJobWait(const std::shared_ptr<JobWait>& wait) {
  std::shared_ptr<JobWait> taken;
  {
    absl::MutexLock lock(&mu_);
    taken = waits_.Take(wait->key);
  }
  if (taken) taken->done(absl::CancelledError("the caller went away"));
}

void JobManager::AnswerWaits(const std::string& job_id) {
  JobWaits::Waits waiting;
  {
    absl::MutexLock lock(&mu_);
    waiting = waits_.TakeJob(job_id);
  }
  if (waiting.empty()) return;
  auto job = Get(job_id, auth::Scope::Everything());  // the wait was in scope
  for (auto& wait : waiting) wait->done(job);
}

void JobManager::ExpireWaits(int64_t now_ms, Replies& replies) {
  for (auto& wait : waits_.TakeDue(now_ms)) {
    replies.push_back([this, wait] { wait->done(Get(wait->job_id, auth::Scope::Everything())); });
  }
}

}  // namespace jobstream::jobs
