#include "server/jobs/pg_manager.h"

#include <pthread.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/ids.h"
#include "server/jobs/transitions.h"
#include "server/watch/event_hub.h"

namespace jobstream::jobs {

using v1::Job;
using v1::JobEvent;
using v1::ToProto;

namespace {

absl::Status NotYet(absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(what, " is not available on the PostgreSQL store yet"));
}

JobEvent EventOf(JobEvent::Type type, absl::Time now) {
  JobEvent event;
  event.set_type(type);
  *event.mutable_time() = ToProto(now);
  return event;
}

}  // namespace

PgJobManager::PgJobManager(storage::pg::PgStore* store, const JobTypes* types,
                           PgManagerOptions options)
    : store_(store), types_(types), options_(std::move(options)) {
  renewer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-pg-renew");
    RenewLoop();
  });
}

PgJobManager::~PgJobManager() { Stop(); }

absl::Status PgJobManager::Recover() { return absl::OkStatus(); }

void PgJobManager::Observe(const JobEvent& event) {
  if (v1::IsTerminal(event.type())) {
    JobWaits::Waits finished;
    {
      absl::MutexLock lock(&mu_);
      finished = waits_.TakeJob(event.job_id());
    }
    AnswerWaits(finished);
    return;
  }
  const Job& job = event.status();
  if (job.state() != Job::QUEUED) return;
  const JobType* type = types_->Find(job.type());
  if (type == nullptr || !type->in_server()) return;
  absl::MutexLock lock(&mu_);
  ready_cv_.SignalAll();
}

// ---------------------------------------------------------------------------------------
// Client calls

void PgJobManager::Submit(const v1::SubmitRequest& request, const auth::Scope& scope,
                          JobCallback done) {
  const absl::Time now = absl::Now();
  if (absl::Status s = ValidateSubmit(request, *types_, options_.limits, now); !s.ok()) {
    return done(s);
  }
  if (absl::Status s = CheckSubmitWebhook(request, options_.webhook_policy); !s.ok()) {
    return done(s);
  }
  Job job = NewJob(request, *types_->Find(request.type()), scope.tenant, now);
  auto inserted = store_->InsertJob(job, request.params(), EventOf(JobEvent::CREATED, now));
  if (!inserted.ok()) return done(inserted.status());
  if (inserted->created) {
    *inserted->job.mutable_params() = request.params();
    return done(std::move(inserted->job));
  }
  done(Get(inserted->job.id(), auth::Scope::Everything()));  // a twin's job, as it stands
}

absl::StatusOr<Job> PgJobManager::Get(const std::string& job_id, const auth::Scope& scope) const {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return s;
  auto job = store_->GetJobWithParams(job_id);
  if (absl::IsNotFound(job.status())) return watch::JobNotFound(*store_, job_id, scope);
  if (!job.ok()) return job.status();
  if (!scope.Sees(*job)) return watch::NoSuchJob(job_id);
  return job;
}

void PgJobManager::Cancel(const std::string& job_id, const auth::Scope& scope, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  const absl::Time now = absl::Now();
  Job changed;
  auto events = store_->Transition(job_id, [&](Job& job, std::vector<JobEvent>& out) {
    if (!scope.Sees(job)) return watch::NoSuchJob(job_id);
    switch (job.state()) {
      case Job::QUEUED:
        job.set_state(Job::CANCELLED);
        *job.mutable_end_time() = ToProto(now);
        job.clear_next_attempt_time();
        job.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
        job.mutable_error()->set_message("cancelled by request");
        out.push_back(EventOf(JobEvent::CANCELLED, now));
        break;
      case Job::RUNNING:
        // Whoever runs it stops (a handler of this server at once, of another within a
        // lease renewal, a worker at its next report); the job ends CANCELLED then. The
        // flag is recorded without an event: the job's next event carries it.
        if (!job.cancel_requested()) {
          job.set_cancel_requested(true);
          *job.mutable_update_time() = ToProto(now);
        }
        break;
      case Job::CANCELLED:
        break;  // already: answered as it stands
      default:
        return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is ",
                                                          Job::State_Name(job.state()),
                                                          "; only a live job can be cancelled"));
    }
    changed = job;
    return absl::OkStatus();
  });
  if (absl::IsNotFound(events.status())) {
    return done(watch::JobNotFound(*store_, job_id, scope));
  }
  if (!events.ok()) return done(events.status());
  if (changed.state() == Job::RUNNING) {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(job_id);
    if (it != runs_.end() && !it->second.control->stop.HasBeenNotified()) {
      it->second.control->stop.Notify();
    }
  }
  changed.clear_params();
  done(std::move(changed));
}

v1::ListJobTypesResponse PgJobManager::ListTypes() const {
  v1::ListJobTypesResponse response;
  auto counts = store_->CountLive();
  for (const JobType* type : types_->All()) {
    v1::JobTypeInfo* info = response.add_types();
    *info = type->Info();
    if (counts.ok()) {
      if (auto it = counts->find(type->name); it != counts->end()) {
        info->set_queued(it->second.first);
        info->set_running(it->second.second);
      }
    }
  }
  return response;
}

// ---------------------------------------------------------------------------------------
// WaitJob: a wait is registered before the job is read, so a finish announced meanwhile
// (Observe) finds it; one that finds the job finished already takes itself back.

std::shared_ptr<JobWait> PgJobManager::WaitJob(const std::string& job_id, const auth::Scope& scope,
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
    {
      absl::MutexLock lock(&mu_);
      if (!stop_running_) {
        wait = waits_.Add(job_id, std::move(done), absl::Now() + timeout);
        renewer_wake_ = true;  // its deadline may come before the renewer's next round
      }
    }
    if (wait != nullptr) {
      auto job = store_->GetJob(job_id);
      if (job.ok() && scope.Sees(*job) && !v1::IsFinished(job->state())) return wait;
      absl::MutexLock lock(&mu_);
      std::shared_ptr<JobWait> taken = waits_.Take(wait->key);
      if (taken == nullptr) return nullptr;  // answered meanwhile: it finished
      done = std::move(taken->done);
    }
  }
  done(Get(job_id, scope));  // finished, unknown, not the caller's, or no time to wait
  return nullptr;
}

void PgJobManager::AbandonJobWait(const std::shared_ptr<JobWait>& wait) {
  std::shared_ptr<JobWait> taken;
  {
    absl::MutexLock lock(&mu_);
    taken = waits_.Take(wait->key);
  }
  if (taken) taken->done(absl::CancelledError("the caller went away"));
}

void PgJobManager::AnswerWaits(const JobWaits::Waits& waits) const {
  for (const auto& wait : waits) {
    wait->done(Get(wait->job_id, auth::Scope::Everything()));  // the wait was in scope
  }
}

// ---------------------------------------------------------------------------------------
// In-server runs

bool PgJobManager::Admits(const std::string& type) const {
  auto it = running_.find(type);
  return types_->Admits(type, it == running_.end() ? 0 : it->second);
}

std::optional<Attempt> PgJobManager::Acquire(const std::vector<std::string>& types) {
  absl::MutexLock lock(&mu_);
  while (!stop_running_) {
    std::vector<std::string> admitted;
    for (const std::string& t : types) {
      if (Admits(t)) admitted.push_back(t);
    }
    if (!admitted.empty()) {
      const absl::Time now = absl::Now();
      mu_.Unlock();  // the claim is a round trip; other runners claim meanwhile
      auto claimed = store_->ClaimLeased(
          admitted, absl::ToUnixMillis(now), 1,
          [&](Job& job, std::vector<JobEvent>& out) -> absl::StatusOr<storage::LeaseRecord> {
            storage::LeaseRecord lease =
                StartJob(job, types_->Of(job.type()), now, options_.server_id, NewLeaseId(job.id()),
                         options_.run_lease);
            out.push_back(EventOf(JobEvent::STARTED, now));
            return lease;
          });
      mu_.Lock();
      if (!claimed.ok()) {
        std::cerr << "jobstream-server: claiming a job: " << claimed.status() << "\n";
      } else if (!claimed->empty()) {
        storage::pg::PgStore::Claimed& got = claimed->front();
        const Job& job = got.events.back().status();
        Run& run = runs_[job.id()];
        run.lease_id = got.lease.lease_id();
        run.type = job.type();
        run.control = std::make_shared<RunControl>();
        run.attempt_deadline_ms = got.lease.attempt_deadline_ms();
        ++running_[job.type()];
        if (stop_running_) {  // stopped while claiming: the job goes back at once
          run.control->server_stopping = true;
          run.control->stop.Notify();
        }
        return Attempt{job.id(), job.type(), job.attempt(),
                       std::make_shared<const google::protobuf::Struct>(std::move(got.params)),
                       run.control};
      }
    }
    // Woken by a job becoming ready (Observe) or a slot coming free; and every second,
    // for jobs whose time came (run_at, retry backoff) and errors that passed.
    ready_cv_.WaitWithTimeout(&mu_, absl::Seconds(1));
  }
  return std::nullopt;
}

void PgJobManager::Report(const Attempt& attempt, const v1::Progress& progress) {
  std::string lease_id;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(attempt.job_id);
    if (it == runs_.end() || it->second.control != attempt.control) return;  // stale
    lease_id = it->second.lease_id;
  }
  const absl::Time now = absl::Now();
  auto events = store_->ChangeLeased(
      attempt.job_id, lease_id, /*end_lease=*/false, [&](Job& job, std::vector<JobEvent>& out) {
        const JobEvent::Type type = ApplyProgress(*job.mutable_progress(), progress);
        if (type != JobEvent::TYPE_UNSPECIFIED) {
          *job.mutable_update_time() = ToProto(now);
          out.push_back(EventOf(type, now));
        }
        return absl::OkStatus();
      });
  if (absl::IsFailedPrecondition(events.status()) && !attempt.control->stop.HasBeenNotified()) {
    attempt.control->stop.Notify();  // the lease is lost (taken over): stop working on it
  }
}

void PgJobManager::Finish(const Attempt& attempt, absl::StatusOr<google::protobuf::Value> outcome) {
  std::string lease_id;
  {
    absl::MutexLock lock(&mu_);
    auto it = runs_.find(attempt.job_id);
    if (it == runs_.end() || it->second.control != attempt.control) return;
    lease_id = it->second.lease_id;
    runs_.erase(it);
    if (auto r = running_.find(attempt.type); r != running_.end() && --r->second == 0) {
      running_.erase(r);
    }
    ready_cv_.SignalAll();  // a slot came free
  }
  const RunControl& control = *attempt.control;
  const absl::Time now = absl::Now();
  auto events = store_->ChangeLeased(
      attempt.job_id, lease_id, /*end_lease=*/true, [&](Job& job, std::vector<JobEvent>& out) {
        const JobType& type = types_->Of(job.type());
        AttemptEnd end = EndOfRun(job, type, outcome, control.timed_out.load(),
                                  control.server_stopping.load(), options_.limits.max_params_bytes);
        out.push_back(EventOf(EndJobAttempt(job, type, end, now), now));
        *job.mutable_update_time() = ToProto(now);
        return absl::OkStatus();
      });
  if (!events.ok() && !absl::IsFailedPrecondition(events.status())) {
    // The lease stays, and expires: the job is then retried by whichever server sweeps.
    std::cerr << "jobstream-server: ending attempt " << attempt.attempt << " of job "
              << attempt.job_id << ": " << events.status() << "\n";
  }
}

void PgJobManager::RenewLoop() {
  absl::MutexLock lock(&mu_);
  // Each second (sooner for a short lease): cancels and the chores need no more.
  const absl::Duration every =
      std::clamp(options_.run_lease / 3, absl::Milliseconds(100), absl::Seconds(1));
  absl::Time renew_at = absl::Now();
  while (!stopped_) {
    // Up to the next renewal, or the next wait's deadline if that comes first.
    absl::Time until = renew_at;
    if (std::optional<int64_t> next = waits_.NextDue()) {
      until = std::min(until, absl::FromUnixMillis(*next));
    }
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](PgJobManager* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                                return self->stopped_ || self->renewer_wake_;
                              },
                              this),
                          until);
    renewer_wake_ = false;
    if (stopped_) break;
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    if (JobWaits::Waits expired = waits_.TakeDue(now_ms); !expired.empty()) {
      mu_.Unlock();
      AnswerWaits(expired);  // the job as it stands
      mu_.Lock();
    }
    if (absl::Now() < renew_at) continue;
    renew_at = absl::Now() + every;
    std::vector<std::string> leases, jobs;
    for (auto& [id, run] : runs_) {
      leases.push_back(run.lease_id);
      jobs.push_back(id);
      if (run.attempt_deadline_ms != 0 && now_ms >= run.attempt_deadline_ms &&
          !run.control->stop.HasBeenNotified()) {
        run.control->timed_out = true;  // Finish records the timeout
        run.control->stop.Notify();
      }
    }
    mu_.Unlock();
    std::vector<std::string> cancelled;
    if (!leases.empty()) {
      store_->ExtendLeases(leases, now_ms + absl::ToInt64Milliseconds(options_.run_lease))
          .IgnoreError();  // a renewal missed is made up by the next, well before expiry
      // A cancel asked of another server reaches the handler here.
      store_
          ->VisitJobs(jobs,
                      [&](const Job& job) {
                        if (job.cancel_requested()) cancelled.push_back(job.id());
                      })
          .IgnoreError();  // looked at again in a second
    }
    if (options_.leader != nullptr && options_.leader->TryLead()) SweepLeases(absl::Now());
    mu_.Lock();
    for (const std::string& id : cancelled) {
      auto it = runs_.find(id);
      if (it != runs_.end() && !it->second.control->stop.HasBeenNotified()) {
        it->second.control->stop.Notify();
      }
    }
  }
}

void PgJobManager::SweepLeases(absl::Time now) {
  auto expired = store_->ExpiredLeases(absl::ToUnixMillis(now), 100);
  if (!expired.ok()) return;  // tried again at the next renewal
  for (const auto& entry : *expired) {
    const std::string& job_id = entry.first;
    const storage::LeaseRecord& lease = entry.second;  // (clang 14 cannot capture bindings)
    store_
        ->ChangeLeased(
            job_id, lease.lease_id(), /*end_lease=*/true,
            [&](Job& job, std::vector<JobEvent>& out) {
              AttemptEnd end(AttemptEnd::kFailed);
              end.error = absl::UnavailableError(absl::StrCat(
                  "lease expired: worker \"", lease.worker_id(), "\" reported nothing for ",
                  absl::FormatDuration(absl::Milliseconds(lease.duration_ms()))));
              end.retryable = true;
              out.push_back(EventOf(EndJobAttempt(job, types_->Of(job.type()), end, now), now));
              *job.mutable_update_time() = ToProto(now);
              return absl::OkStatus();
            })
        .IgnoreError();  // renewed or ended meanwhile: the lease fenced it
  }
}

void PgJobManager::StopRunning() {
  JobWaits::Waits waiting;
  {
    absl::MutexLock lock(&mu_);
    stop_running_ = true;
    for (auto& [id, run] : runs_) {
      run.control->server_stopping = true;
      if (!run.control->stop.HasBeenNotified()) run.control->stop.Notify();
    }
    ready_cv_.SignalAll();
    waiting = waits_.TakeAll();
  }
  for (auto& wait : waiting) {
    wait->done(absl::UnavailableError("the server is shutting down; wait again later"));
  }
}

void PgJobManager::Stop() {
  StopRunning();
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  if (renewer_.joinable()) renewer_.join();
}

// ---------------------------------------------------------------------------------------
// Not yet on PostgreSQL (issue 9)

absl::StatusOr<v1::ListJobsResponse> PgJobManager::List(const v1::ListJobsRequest&,
                                                        const auth::Scope&) const {
  return NotYet("ListJobs");
}
void PgJobManager::Delete(const std::string&, const auth::Scope&, StatusCallback done) {
  done(NotYet("DeleteJob"));
}
void PgJobManager::Purge(absl::Time, CountCallback done) { done(NotYet("PurgeJobs")); }
absl::Status PgJobManager::Sweep(absl::Time) { return NotYet("retention"); }
std::shared_ptr<LeaseWaiter> PgJobManager::LeaseJobs(const v1::LeaseJobRequest&, const std::string&,
                                                     const auth::Scope&, LeaseCallback done) {
  done(NotYet("LeaseJob"));
  return nullptr;
}
void PgJobManager::AbandonWait(const std::shared_ptr<LeaseWaiter>&) {}
void PgJobManager::ReportWork(const v1::ReportProgressRequest&, const auth::Scope&,
                              ProgressCallback done) {
  done(NotYet("ReportProgress"));
}
void PgJobManager::CompleteWork(const v1::CompleteJobRequest&, const auth::Scope&,
                                JobCallback done) {
  done(NotYet("CompleteJob"));
}
void PgJobManager::FailWork(const v1::FailJobRequest&, const auth::Scope&, JobCallback done) {
  done(NotYet("FailJob"));
}
void PgJobManager::ReleaseWork(const v1::ReleaseJobRequest&, const auth::Scope&, JobCallback done) {
  done(NotYet("ReleaseJob"));
}
absl::StatusOr<std::unique_ptr<ArtifactUpload>> PgJobManager::BeginArtifact(
    ArtifactHolder, const v1::ArtifactHeader&) {
  return NotYet("artifacts");
}
absl::StatusOr<std::unique_ptr<ArtifactUpload>> PgJobManager::BeginWorkerArtifact(
    const v1::ArtifactHeader&, const auth::Scope&) {
  return NotYet("artifacts");
}
absl::StatusOr<StoredArtifact> PgJobManager::FindArtifact(const std::string&, const std::string&,
                                                          const auth::Scope&) const {
  return NotYet("artifacts");
}
absl::Status PgJobManager::ReadArtifactChunk(const std::string&, const StoredArtifact&, uint32_t,
                                             std::string*) const {
  return NotYet("artifacts");
}

}  // namespace jobstream::jobs
