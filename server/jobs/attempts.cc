// JobManager, part two: attempts. How a queued job starts (on a runner thread or leased
// to a worker), reports progress, and ends; and the WorkerService calls that drive it.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/jobs/ids.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/transitions.h"
#include "server/jobs/worker_requests.h"
#include "server/storage/keys.h"
#include "server/tracing/trace_context.h"

namespace jobstream::jobs {

using storage::Batch;
using storage::Cf;
using v1::IsFinished;
using v1::Job;
using v1::JobEvent;
using v1::ToProto;


// ---------------------------------------------------------------------------------------
// Starting, reporting, ending

void JobManager::StartAttempt(LiveJob& live, absl::Time now, const std::string& worker_id,
                              absl::Duration lease_duration, JobCallback done) {
  Job& job = live.job;
  const JobType& type = types_->Of(job.type());
  const bool external = !type.in_server();
  Batch batch;
  queue_.Start(live.queue_key, absl::ToUnixMillis(now));
  batch.Delete(Cf::kQueue, live.queue_key);
  live.queue_key.clear();
  live.lease = StartJob(job, type, now, worker_id, external ? NewLeaseId(job.id()) : "",
                        lease_duration);
  const storage::LeaseRecord& lease = live.lease;
  if (lease.attempt_deadline_ms() != 0) {
    timeouts_.Set(job.id(), lease.attempt_deadline_ms());
    WakeDispatcherBy(lease.attempt_deadline_ms());
  }
  if (external) {
    lease_deadlines_.Set(job.id(), lease.deadline_ms());
    WakeDispatcherBy(lease.deadline_ms());
  } else {
    live.control = std::make_shared<RunControl>();
  }
  batch.Put(Cf::kLeases, job.id(), lease.SerializeAsString());
  ++running_[job.type()];
  Commit(live, JobEvent::STARTED, std::move(batch), std::move(done)).IgnoreError();
}

absl::Status JobManager::EndAttempt(const std::string& job_id, AttemptEnd end, JobCallback done) {
  auto it = live_.find(job_id);
  LiveJob& live = it->second;
  Job& job = live.job;
  const JobType& type = types_->Of(job.type());
  const absl::Time now = absl::Now();
  Batch batch;
  batch.Delete(Cf::kLeases, job_id);
  lease_deadlines_.Clear(job_id);
  timeouts_.Clear(job_id);
  live.control.reset();
  live.lease.Clear();
  if (auto running = running_.find(job.type()); running != running_.end() && --running->second == 0) {
    running_.erase(running);
  }
  queue_.Release(job.type(), job.tenant(), job.concurrency_key(), absl::ToUnixMillis(now));
  const JobEvent::Type event = EndJobAttempt(job, type, end, now);
  const bool requeue = job.state() == Job::QUEUED;
  if (requeue) SetQueueKey(live, batch);
  absl::Status status = Commit(live, event, std::move(batch), std::move(done));
  const std::string job_type = job.type();
  if (requeue) {
    Enqueue(live);
  }
  Wake(job_type);  // a slot of the type came free
  return status;
}

absl::Status JobManager::RecordProgress(LiveJob& live, const v1::Progress& p, Batch batch,
                                        StatusCallback done) {
  const JobEvent::Type type = ApplyProgress(*live.job.mutable_progress(), p);
  if (type == JobEvent::TYPE_UNSPECIFIED) {
    if (batch.empty()) return absl::OkStatus();
    live.pending_progress.reset();
    return committer_.Enqueue({std::move(batch), {}, std::move(done)}).status();
  }
  if (type == JobEvent::PROGRESS && live.pending_progress) {
    // The previous PROGRESS is not written yet and nobody saw it: replace it in place,
    // keeping its sequence, so fsyncs stay bounded however fast a job reports.
    const absl::Time now = absl::Now();
    *live.job.mutable_update_time() = ToProto(now);
    Batch replacement = batch;
    std::vector<storage::CommittedEventPtr> events = {AddRecordAndEvent(
        replacement, live.job, MakeEvent(live.job, JobEvent::PROGRESS, now))};
    if (committer_.TryReplace(live.pending_progress, std::move(replacement), std::move(events),
                              done)) {
      return absl::OkStatus();
    }
  }
  JobCallback on_commit;
  if (done) on_commit = [done](absl::StatusOr<Job> job) { done(job.status()); };
  return Commit(live, type, std::move(batch), std::move(on_commit));
}

JobManager::LiveJob* JobManager::LoadQueued(const std::string& key) {
  const std::string job_id = storage::ParseQueueKey(key)->job_id;
  const bool held = live_.contains(job_id);
  auto loaded = Load(job_id, /*with_params=*/true);
  if (loaded.ok() && (*loaded)->job.state() == Job::QUEUED) {
    (*loaded)->queue_key = key;
    return *loaded;
  }
  // A queue entry whose job is gone or has moved on (say, cancelled by an older version
  // that keyed retries differently): drop it rather than start the job.
  std::cerr << "jobstream-server: dropping a stale queue entry of job " << job_id << ": "
            << (loaded.ok() ? Job::State_Name((*loaded)->job.state()) : loaded.status().ToString())
            << "\n";
  queue_.Remove(key, absl::ToUnixMillis(absl::Now()));
  Batch batch;
  batch.Delete(Cf::kQueue, key);
  committer_.Enqueue({std::move(batch), {}, nullptr}).IgnoreError();
  if (!held) live_.erase(job_id);
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// Runner calls (in-server types)

std::optional<Attempt> JobManager::Acquire(const std::vector<std::string>& types) {
  absl::MutexLock lock(&mu_);
  auto admits = [this](absl::string_view type) { return Admits(type); };
  while (!stop_running_) {
    std::optional<std::string> key;
    if (store_failure_.ok()) key = queue_.Next(types, admits);
    if (!key) {
      ready_cv_.Wait(&mu_);  // a job, or the store back after a failure
      continue;
    }
    LiveJob* live = LoadQueued(*key);
    if (live == nullptr) continue;
    StartAttempt(*live, absl::Now(), "server", absl::ZeroDuration(), nullptr);
    if (absl::Status health = committer_.health(); !health.ok()) {
      MarkStoreFailed(health);  // its hook may not have run yet
      continue;  // the job is read back from the store once it is back
    }
    // One wake-up per newly ready job may have been spent on several: pass it on.
    if (queue_.Next(types, admits)) ready_cv_.Signal();
    ++attempts_in_server_;
    return Attempt{live->job.id(), live->job.type(), live->job.attempt(), live->params,
                   live->control,
                   tracing::AttemptTraceparent(
                       live->job.trace(), tracing::AttemptKey(live->job, live->job.attempt()))};
  }
  return std::nullopt;
}

void JobManager::Report(const Attempt& attempt, const v1::Progress& progress) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(attempt.job_id);
  if (it == live_.end() || it->second.control != attempt.control) return;  // a stale attempt
  RecordProgress(it->second, progress, {}, nullptr).IgnoreError();  // a failed store is sticky
}

void JobManager::Finish(const Attempt& attempt, absl::StatusOr<google::protobuf::Value> outcome) {
  absl::MutexLock lock(&mu_);
  --attempts_in_server_;
  auto it = live_.find(attempt.job_id);
  if (it == live_.end() || it->second.control != attempt.control) return;
  const RunControl& control = *attempt.control;
  const Job& job = it->second.job;
  AttemptEnd end = EndOfRun(job, types_->Of(job.type()), std::move(outcome),
                            control.timed_out.load(), control.server_stopping.load(),
                            options_.limits.max_params_bytes);
  EndAttempt(attempt.job_id, std::move(end), nullptr).IgnoreError();
}

// ---------------------------------------------------------------------------------------
// Worker calls (EXTERNAL types)

absl::StatusOr<JobManager::LiveJob*> JobManager::FindLease(const std::string& lease_id,
                                                          const auth::Scope& scope) {
  auto job_id = LeaseJobId(lease_id);
  if (!job_id.ok()) return job_id.status();
  auto it = live_.find(*job_id);
  if (it == live_.end() || it->second.lease.lease_id() != lease_id ||
      !scope.Sees(it->second.job)) {
    return LeaseNotHeld(lease_id, *job_id);
  }
  return &it->second;
}

int JobManager::Grant(const std::shared_ptr<LeaseWaiter>& waiter, absl::Time now) {
  if (!store_failure_.ok()) return 0;  // it waits for the store to come back
  auto admits = [this](absl::string_view type) { return Admits(type); };
  auto response = std::make_shared<v1::LeaseJobResponse>();
  const std::string* tenant = waiter->tenant ? &*waiter->tenant : nullptr;
  for (std::optional<std::string> key = queue_.Next(waiter->types, admits, tenant);
       key && response->jobs_size() < waiter->max_jobs;
       key = queue_.Next(waiter->types, admits, tenant)) {
    LiveJob* live = LoadQueued(*key);
    if (live == nullptr) continue;
    StartAttempt(*live, now, waiter->worker_id, waiter->lease_duration, nullptr);
    v1::LeasedJob* leased = response->add_jobs();
    *leased->mutable_job() = live->job;  // as its STARTED event has it
    *leased->mutable_job()->mutable_params() = *live->params;
    leased->set_lease_id(live->lease.lease_id());
    *leased->mutable_lease_expire_time() = ToProto(absl::FromUnixMillis(live->lease.deadline_ms()));
    leased->set_traceparent(tracing::AttemptTraceparent(
        live->job.trace(), tracing::AttemptKey(live->job, live->job.attempt())));
  }
  // Counted now: once the barrier is queued, the delivery thread may answer (and move the
  // response away) before this returns.
  const int granted = response->jobs_size();
  if (granted == 0) return 0;
  // Answered once every STARTED event is durable: the committer writes in order.
  auto done = std::make_shared<LeaseCallback>(std::move(waiter->done));
  absl::Status queued = committer_.Barrier([response, done](absl::Status s) {
    if (s.ok()) (*done)(std::move(*response)); else (*done)(s);
  });
  if (!queued.ok()) (*done)(queued);
  return granted;
}

void JobManager::ServeWaiters() {
  const absl::Time now = absl::Now();
  WaiterList& waiters = workers_.waiters();
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (Grant(*it, now) > 0) {
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
}

std::shared_ptr<LeaseWaiter> JobManager::LeaseJobs(const v1::LeaseJobRequest& request,
                                                   const std::string& default_worker_id,
                                                   const auth::Scope& scope,
                                                   LeaseCallback done) {
  const absl::Time now = absl::Now();
  auto parsed = ParseLeaseJobs(request, default_worker_id, scope, *types_, now);
  if (!parsed.ok()) {
    done(parsed.status());
    return nullptr;
  }
  std::shared_ptr<LeaseWaiter> waiter = *std::move(parsed);
  waiter->done = std::move(done);
  const bool wait = waiter->deadline > now;

  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stop_running_) {
      refused = absl::UnavailableError("the server is shutting down; lease again later");
    } else {
      workers_.Seen(waiter->types, waiter->worker_id, now);
      if (Grant(waiter, now) > 0) return nullptr;
      if (wait) {
        workers_.waiters().push_back(waiter);
        WakeDispatcherBy(absl::ToUnixMillis(waiter->deadline));
        return waiter;
      }
    }
  }
  if (refused.ok()) waiter->done(v1::LeaseJobResponse()); else waiter->done(refused);
  return nullptr;
}

void JobManager::AbandonWait(const std::shared_ptr<LeaseWaiter>& waiter) {
  LeaseCallback done;
  {
    absl::MutexLock lock(&mu_);
    WaiterList& waiters = workers_.waiters();
    auto it = std::find(waiters.begin(), waiters.end(), waiter);
    if (it == waiters.end()) return;  // answered already, or being answered
    done = std::move((*it)->done);
    waiters.erase(it);
  }
  done(absl::CancelledError("the call was cancelled"));
}

void JobManager::ReportWork(const v1::ReportProgressRequest& request, const auth::Scope& scope,
                            ProgressCallback done) {
  auto parsed = ParseReportProgress(request);
  if (!parsed.ok()) return done(parsed.status());
  const std::optional<absl::Duration> extension = *parsed;
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    auto found = FindLease(request.lease_id(), scope);
    if (found.ok()) {
      LiveJob& live = **found;
      const absl::Time now = absl::Now();
      storage::LeaseRecord& lease = live.lease;
      if (extension) lease.set_duration_ms(absl::ToInt64Milliseconds(*extension));
      lease.set_deadline_ms(absl::ToUnixMillis(now + absl::Milliseconds(lease.duration_ms())));
      lease_deadlines_.Set(live.job.id(), lease.deadline_ms());
      Batch batch;
      batch.Put(Cf::kLeases, live.job.id(), lease.SerializeAsString());
      v1::ReportProgressResponse response;
      response.set_cancel_requested(live.job.cancel_requested());
      *response.mutable_lease_expire_time() = ToProto(absl::FromUnixMillis(lease.deadline_ms()));
      // Answered once durable: a lease extended is extended across a crash.
      auto on_commit = [response, done](absl::Status s) {
        if (s.ok()) done(response); else done(s);
      };
      error = RecordProgress(live, request.progress(), std::move(batch), std::move(on_commit));
      if (error.ok()) return;
    } else {
      error = found.status();
    }
  }
  done(error);
}

void JobManager::EndLeased(const std::string& lease_id, const auth::Scope& scope,
                           const std::function<AttemptEnd(const LiveJob&)>& end,
                           JobCallback done) {
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    auto found = FindLease(lease_id, scope);
    if (found.ok()) {
      error = EndAttempt((*found)->job.id(), end(**found), done);
      if (error.ok()) return;  // done is called once the end is committed
    } else {
      error = found.status();
    }
  }
  done(error);
}

void JobManager::CompleteWork(const v1::CompleteJobRequest& request, const auth::Scope& scope,
                              JobCallback done) {
  auto end = CompletionOf(request, options_.limits.max_params_bytes);
  if (!end.ok()) return done(end.status());
  EndLeased(request.lease_id(), scope, [&](const LiveJob&) { return *end; }, std::move(done));
}

void JobManager::FailWork(const v1::FailJobRequest& request, const auth::Scope& scope,
                          JobCallback done) {
  auto end = FailureOf(request);
  if (!end.ok()) return done(end.status());
  EndLeased(request.lease_id(), scope, [&](const LiveJob&) { return *end; }, std::move(done));
}

void JobManager::ReleaseWork(const v1::ReleaseJobRequest& request, const auth::Scope& scope,
                             JobCallback done) {
  EndLeased(request.lease_id(), scope,
            [](const LiveJob& live) { return ReleaseOf(live.lease.worker_id()); },
            std::move(done));
}

}  // namespace jobstream::jobs
