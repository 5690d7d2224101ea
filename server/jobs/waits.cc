// JobManager, part four: WaitJob, the long-poll. A wait is registered under the lock
// after reading the job from the store, and a finished job's waits are taken under the
// lock after its terminal event is written: so a wait either sees the job finished or is
// there to be answered when it finishes — never neither.
#include "absl/strings/str_cat.h"
#include "server/jobs/ids.h"
#include "server/jobs/job_manager.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

namespace {
// The range of job_waits_ keys of one job.
std::string WaitPrefix(const std::string& job_id) { return job_id + "/"; }
}  // namespace

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
  std::shared_ptr<JobWait> wait;
  if (timeout > absl::ZeroDuration()) {
    absl::MutexLock lock(&mu_);
    auto job = store_->GetJob(job_id);
    if (job.ok() && scope.Sees(*job) && !v1::IsFinished(job->state()) && !stop_running_) {
      wait = std::make_shared<JobWait>();
      wait->key = WaitPrefix(job_id);
      storage::PutBigEndian64(&wait->key, ++wait_counter_);
      wait->job_id = job_id;
      wait->done = std::move(done);
      job_waits_[wait->key] = wait;
      const int64_t deadline_ms = absl::ToUnixMillis(absl::Now() + timeout);
      wait_deadlines_.Set(wait->key, deadline_ms);
      WakeDispatcherBy(deadline_ms);
      return wait;
    }
  }
  done(Get(job_id, scope));  // finished, unknown, not the caller's, or no time to wait
  return nullptr;
}

void JobManager::AbandonJobWait(const std::shared_ptr<JobWait>& wait) {
  JobCallback done;
  {
    absl::MutexLock lock(&mu_);
    auto it = job_waits_.find(wait->key);
    if (it == job_waits_.end()) return;  // answered already
    done = std::move(it->second->done);
    wait_deadlines_.Clear(wait->key);
    job_waits_.erase(it);
  }
  done(absl::CancelledError("the caller went away"));
}

void JobManager::AnswerWaits(const std::string& job_id) {
  std::vector<JobCallback> waiting;
  {
    absl::MutexLock lock(&mu_);
    const std::string prefix = WaitPrefix(job_id);
    auto it = job_waits_.lower_bound(prefix);
    while (it != job_waits_.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
      waiting.push_back(std::move(it->second->done));
      wait_deadlines_.Clear(it->first);
      it = job_waits_.erase(it);
    }
  }
  if (waiting.empty()) return;
  auto job = Get(job_id, auth::Scope::Everything());  // the wait was in scope
  for (auto& done : waiting) done(job);
}

void JobManager::ExpireWaits(int64_t now_ms, Replies& replies) {
  for (const std::string& key : wait_deadlines_.TakeDue(now_ms)) {
    auto it = job_waits_.find(key);
    if (it == job_waits_.end()) continue;
    replies.push_back([this, job_id = it->second->job_id, done = std::move(it->second->done)] {
      done(Get(job_id, auth::Scope::Everything()));
    });
    job_waits_.erase(it);
  }
}

}  // namespace jobstream::jobs
