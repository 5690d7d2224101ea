#include "server/jobs/pg_manager.h"

#include <pthread.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/graph.h"
#include "server/jobs/ids.h"
#include "server/jobs/list_request.h"
#include "server/jobs/transitions.h"
#include "server/jobs/unique.h"
#include "server/jobs/validation.h"
#include "server/jobs/worker_requests.h"
#include "server/metrics/server_metrics.h"
#include "server/tracing/trace_context.h"
#include "server/storage/keys.h"
#include "server/watch/event_hub.h"

namespace jobstream::jobs {

using v1::Job;
using v1::JobEvent;
using v1::ToProto;

namespace {

// Records what a write committed (RecordStateChange: log lines and counts).
void RecordAll(const std::vector<JobEvent>& events) {
  for (const JobEvent& e : events) RecordStateChange(e);
}

// A progress report applied to a stored job: its event, if it moved anything.
void ReportTo(Job& job, const v1::Progress& progress, absl::Time now, std::vector<JobEvent>& out) {
  const JobEvent::Type type = ApplyProgress(*job.mutable_progress(), progress);
  if (type == JobEvent::TYPE_UNSPECIFIED) return;
  *job.mutable_update_time() = ToProto(now);
  out.push_back(EventOf(type, now));
}

// An attempt of a stored job ended as `how` says: its event.
void EndTo(Job& job, const JobType& type, const AttemptEnd& how, absl::Time now,
           std::vector<JobEvent>& out) {
  out.push_back(EventOf(EndJobAttempt(job, type, how, now), now));
  *job.mutable_update_time() = ToProto(now);
}

}  // namespace

PgJobManager::PgJobManager(storage::pg::PgStore* store, const JobTypes* types,
                           PgManagerOptions options)
    : store_(store), types_(types), options_(std::move(options)), key_limits_(types->KeyLimits()) {
  for (const JobType* type : types_->All()) {
    if (type->concurrency > 0) caps_[type->name] = type->concurrency;
  }
  calls_ = std::make_unique<util::TaskPool>("js-pg-call", std::max(1, options_.call_threads));
  renewer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-pg-renew");
    RenewLoop();
  });
  inserts_ = std::make_unique<util::BatchWriter<PendingInsert>>(
      "js-pg-insert", 4, 256, [this](std::vector<PendingInsert>& batch) { WriteInserts(batch); });
  // Two: while one batch commits, the next gathers.
  for (int i = 0; i < 2; ++i) {
    run_writers_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "js-pg-runwrite");
      WriteRuns();
    });
  }
  leased_ = std::make_unique<util::BatchWriter<PendingLeased>>(
      "js-pg-workwrite", 2, 128, [this](std::vector<PendingLeased>& batch) { WriteLeased(batch); });
  ended_ = std::make_unique<util::BatchWriter<std::string>>(
      "js-pg-graph", 1, 256, [this](std::vector<std::string>& batch) { MoveDependents(batch); });
  children_ended_ = std::make_unique<util::BatchWriter<std::string>>(
      "js-pg-batch", 1, 256, [this](std::vector<std::string>& batch) { CountChildren(batch); });
  granter_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-pg-grant");
    GrantLoop();
  });
}

PgJobManager::~PgJobManager() { Stop(); }

// Runs this server's id held when it stopped (or died: a server keeping its --server_id
// across restarts) are ended at once, as the RocksDB server's recovery ends them, rather
// than when their leases expire.
absl::Status PgJobManager::Recover() {
  auto held = store_->LeasesHeldBy(options_.server_id);
  if (!held.ok()) return held.status();
  for (const auto& entry : *held) {
    auto ended = EndLease(entry.first, entry.second.lease_id(),
                          [](const Job& job) { return Interrupted(job, "the server stopped"); });
    if (!ended.ok() && !absl::IsFailedPrecondition(ended.status())) return ended.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobEvent>> PgJobManager::EndLease(
    const std::string& job_id, const std::string& lease_id,
    const std::function<absl::StatusOr<AttemptEnd>(const Job&)>& end) {
  const absl::Time now = absl::Now();
  auto events = store_->ChangeLeased(job_id, lease_id, /*end_lease=*/true,
                                     [&](Job& job, std::vector<JobEvent>& out) {
                                       absl::StatusOr<AttemptEnd> how = end(job);
                                       if (!how.ok()) return how.status();
                                       EndTo(job, types_->Of(job.type()), *how, now, out);
                                       return absl::OkStatus();
                                     });
  if (events.ok()) RecordAll(*events);
  return events;
}

absl::StatusOr<std::vector<storage::pg::PgStore::Claimed>> PgJobManager::Claim(
    const std::vector<std::string>& types, int limit, std::optional<std::string> tenant,
    const std::function<Holder(size_t)>& holder) {
  storage::pg::PgStore::ClaimOptions options;
  options.tenant = std::move(tenant);
  options.max_running = &caps_;
  options.key_limits = &key_limits_;
  auto claimed = store_->ClaimLeased(
      types, absl::ToUnixMillis(absl::Now()), limit,
      [&](Job& job, std::vector<JobEvent>& out,
          size_t index) -> absl::StatusOr<storage::LeaseRecord> {
        // Read inside the transaction: after whatever ended to make room committed.
        const absl::Time started = absl::Now();
        const Holder by = holder(index);
        storage::LeaseRecord lease = StartJob(job, types_->Of(job.type()), started, by.worker_id,
                                              NewLeaseId(job.id()), by.lease_duration);
        out.push_back(EventOf(JobEvent::STARTED, started));
        return lease;
      },
      options);
  if (claimed.ok()) {
    for (const auto& got : *claimed) RecordAll(got.events);
  }
  return claimed;
}

void PgJobManager::Observe(const JobEvent& event) {
  if (v1::IsTerminal(event.type())) {
    if (options_.leader == nullptr || leading_) {  // the jobs waiting for it move on
      std::string id = event.job_id();
      ended_->Post(id);
      if (!event.status().parent_id().empty()) children_ended_->Post(id);  // its parent too
    }
    JobWaits::Waits finished;
    {
      absl::MutexLock lock(&mu_);
      finished = waits_.TakeJob(event.job_id());
    }
    AnswerWaits(finished);
    // An end frees a slot of a capped type, or of a key.
    if (!caps_.contains(event.status().type()) &&
        !key_limits_.contains(event.status().type())) {
      return;
    }
  }
  const Job& job = event.status();
  const JobType* type = types_->Find(job.type());
  if (type == nullptr) return;
  // A job of the type queued, or one ended and freed a slot of a capped type (on any
  // server: the cap counts every server's runs).
  if (job.state() == Job::RUNNING) return;
  absl::MutexLock lock(&mu_);
  if (type->in_server()) {
    ++ready_hints_;
    ready_cv_.SignalAll();
    return;
  }
  hinted_.insert(job.type());
  granter_wake_ = true;
}

// ---------------------------------------------------------------------------------------
// Client calls

void PgJobManager::SubmitMade(const v1::SubmitRequest& request, const auth::Scope& scope,
                              MadeJob made, JobCallback done) {
  calls_->Post([this, request, scope, made = std::move(made), done = std::move(done)] {
    SubmitNow(request, scope, made, done);
  });
}

void PgJobManager::SubmitNow(const v1::SubmitRequest& request, const auth::Scope& scope,
                             const MadeJob& made, JobCallback done) {
  const absl::Time now = absl::Now();
  if (absl::Status s = ValidateSubmit(request, *types_, options_.limits, now); !s.ok()) {
    return done(s);
  }
  if (absl::Status s = CheckSubmitWebhook(request, options_.webhook_policy); !s.ok()) {
    return done(s);
  }
  auto queued = QueuedOf(scope.tenant);
  if (!queued.ok()) return done(queued.status());
  if (*queued >= options_.limits.max_queued_per_tenant) {
    if (!request.request_id().empty()) {  // a retry of a job in is answered with it
      auto twin = store_->FindRequest(scope.tenant, request.request_id());
      if (!twin.ok()) return done(twin.status());
      if (twin->has_value()) return done(Get((*twin)->id(), auth::Scope::Everything()));
    }
    return done(QueueFull(scope.tenant, *queued));
  }
  Job job = NewJob(request, *types_->Find(request.type()), scope.tenant, now);
  if (made) made(job);
  if (!request.depends_on().empty()) {
    return SubmitWaiting(request, scope, std::move(job), now, std::move(done));
  }
  if (request.request_id().empty() && request.unique_key().empty()) {
    return Enqueue({{std::move(job), request.params(), EventOf(JobEvent::CREATED, now)},
                    scope.tenant,
                    std::move(done)});
  }
  auto inserted = store_->InsertJob(job, request.params(), EventOf(JobEvent::CREATED, now),
                                    UniqueHolds(now));
  if (!inserted.ok()) return done(inserted.status());
  if (inserted->deduplicated) return done(Deduplicated(inserted->job.id()));
  if (inserted->created) {
    {
      absl::MutexLock lock(&mu_);
      ++queued_[scope.tenant].count;
    }
    JobEvent created = EventOf(JobEvent::CREATED, now);
    created.set_job_id(inserted->job.id());
    created.set_sequence(inserted->job.last_sequence());
    *created.mutable_status() = inserted->job;
    RecordStateChange(created);
    *inserted->job.mutable_params() = request.params();
    return done(std::move(inserted->job));
  }
  done(Get(inserted->job.id(), auth::Scope::Everything()));  // a twin's job, as it stands
}

storage::pg::PgStore::Holds PgJobManager::UniqueHolds(absl::Time now) {
  return [now](const Job& holder) { return HoldsUniqueKey(holder, now); };
}

absl::StatusOr<Job> PgJobManager::Deduplicated(const std::string& job_id) const {
  auto job = Get(job_id, auth::Scope::Everything());
  if (job.ok()) job->set_deduplicated(true);
  return job;
}

void PgJobManager::Enqueue(PendingInsert insert) {
  if (!inserts_->Post(insert)) {
    insert.done(absl::UnavailableError("the server is shutting down; submit again later"));
  }
}

void PgJobManager::WriteInserts(std::vector<PendingInsert>& batch) {
  std::vector<storage::pg::PgStore::NewJob> rows;
  rows.reserve(batch.size());
  for (PendingInsert& p : batch) rows.push_back(std::move(p.row));
  absl::Status written = store_->InsertJobs(rows);
  if (written.ok()) {
    absl::MutexLock lock(&mu_);
    for (const PendingInsert& p : batch) ++queued_[p.tenant].count;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!written.ok()) {
      batch[i].done(written);
      continue;
    }
    RecordStateChange(rows[i].created);
    Job job = std::move(rows[i].job);
    *job.mutable_params() = std::move(rows[i].params);
    batch[i].done(std::move(job));
  }
}

absl::StatusOr<int64_t> PgJobManager::QueuedOf(const std::string& tenant) {
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    // A count under the cap may be a second old; a refusal is always counted afresh.
    auto it = queued_.find(tenant);
    if (it != queued_.end() && now - it->second.read_at < absl::Seconds(1) &&
        it->second.count < options_.limits.max_queued_per_tenant) {
      return it->second.count;
    }
  }
  auto count = store_->CountQueued(tenant);
  if (!count.ok()) return count.status();
  absl::MutexLock lock(&mu_);
  if (queued_.size() > 10000) queued_.clear();  // counts of tenants long quiet
  queued_[tenant] = {*count, now};
  return *count;
}

absl::StatusOr<Job> PgJobManager::Get(const std::string& job_id, const auth::Scope& scope) const {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return s;
  auto job = store_->GetJobWithParams(job_id);
  if (absl::IsNotFound(job.status())) return watch::JobNotFound(*store_, job_id, scope);
  if (!job.ok()) return job.status();
  if (!scope.Sees(*job)) return watch::NoSuchJob(job_id);
  if (job->has_webhook()) {
    auto deliveries = store_->ListDeliveries(job_id);
    if (!deliveries.ok()) return deliveries.status();
    for (v1::WebhookDelivery& d : *deliveries) *job->add_webhook_deliveries() = std::move(d);
  }
  return job;
}

void PgJobManager::Cancel(const std::string& job_id, const v1::OperatorAction& action,
                          const auth::Scope& scope, JobCallback done) {
  calls_->Post([this, job_id, action, scope, done = std::move(done)] {
    CancelNow(job_id, action, scope, done);
  });
}

void PgJobManager::CancelNow(const std::string& job_id, const v1::OperatorAction& action,
                             const auth::Scope& scope, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  const absl::Time now = absl::Now();
  Job changed;
  auto events = store_->Transition(job_id, CancelChange(action, scope, now, &changed));
  if (absl::IsNotFound(events.status())) {
    return done(watch::JobNotFound(*store_, job_id, scope));
  }
  if (absl::IsAlreadyExists(events.status())) return done(CancelBatch(job_id, now));
  if (!events.ok()) return done(events.status());
  RecordAll(*events);
  if (changed.state() == Job::RUNNING) StopRun(job_id);
  changed.clear_params();
  done(std::move(changed));
}

storage::pg::PgStore::Change PgJobManager::CancelChange(const v1::OperatorAction& action,
                                                       const auth::Scope& scope, absl::Time now,
                                                       Job* changed) const {
  return [action, scope, now, changed](Job& job, std::vector<JobEvent>& out) {
    if (!scope.Sees(job)) return watch::NoSuchJob(job.id());
    switch (job.state()) {
      case Job::QUEUED:
        CancelQueued(job, now);
        Acted(job, action, job.last_sequence() + 1);
        out.push_back(EventOf(JobEvent::CANCELLED, now));
        break;
      case Job::WAITING:  // its job_dependencies rows go when the jobs it waited for end
        if (job.has_batch()) return absl::AlreadyExistsError("a batch");  // CancelBatch's
        CancelWaiting(job, now);
        Acted(job, action, job.last_sequence() + 1);
        out.push_back(EventOf(JobEvent::CANCELLED, now));
        break;
      case Job::RUNNING:
        // Whoever runs it stops (a handler of this server at once, of another within a
        // lease renewal, a worker at its next report); the job ends CANCELLED then. The
        // flag is recorded without an event: the job's next event carries it.
        if (!job.cancel_requested()) {
          job.set_cancel_requested(true);
          Acted(job, action, 0);
          *job.mutable_update_time() = ToProto(now);
        }
        break;
      case Job::CANCELLED:
        break;  // already: answered as it stands
      default:
        return StateError(job, "only a live job can be cancelled");
    }
    if (changed != nullptr) *changed = job;
    return absl::OkStatus();
  };
}

void PgJobManager::StopRun(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(job_id);
  if (it != runs_.end() && !it->second.control->stop.HasBeenNotified()) {
    it->second.control->stop.Notify();
  }
}

void PgJobManager::Retry(const std::string& job_id, const v1::OperatorAction& action,
                         const auth::Scope& scope, JobCallback done) {
  calls_->Post([this, job_id, action, scope, done = std::move(done)] {
    RetryNow(job_id, action, scope, done);
  });
}

storage::pg::PgStore::Change PgJobManager::RetryChange(v1::OperatorAction action,
                                                      const auth::Scope& scope, absl::Time now,
                                                      Job* changed) const {
  return [this, action, scope, now, changed](Job& job, std::vector<JobEvent>& out) mutable {
    if (!scope.Sees(job)) return watch::NoSuchJob(job.id());
    if (absl::Status s = CheckRetry(job); !s.ok()) return s;
    if (!job.parent_id().empty()) {  // a child of a batch still running would count twice
      auto parent = store_->GetJob(job.parent_id());
      if (parent.ok() && !v1::IsFinished(parent->state())) return BatchRunning(job);
    }
    action.set_sequence(job.last_sequence() + 1);
    RetryEnded(job, action, now);
    out.push_back(EventOf(JobEvent::RETRIED, now));
    if (changed != nullptr) *changed = job;
    return absl::OkStatus();
  };
}

std::vector<absl::Status> PgJobManager::ChangeMany(BulkOp op, const std::vector<std::string>& ids,
                                                   const v1::OperatorAction& action,
                                                   const auth::Scope& scope) {
  if (op == BulkOp::kDelete) return JobBackend::ChangeMany(op, ids, action, scope);
  const absl::Time now = absl::Now();
  std::vector<Job> changed(ids.size());
  std::vector<storage::pg::PgStore::BatchChange> changes;
  changes.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    changes.push_back({ids[i], op == BulkOp::kRetry
                                   ? RetryChange(action, scope, now, &changed[i])
                                   : CancelChange(action, scope, now, &changed[i])});
  }
  absl::Status written = store_->TransitionBatch(changes);
  std::vector<absl::Status> results;
  results.reserve(changes.size());
  for (size_t i = 0; i < changes.size(); ++i) {
    auto& c = changes[i];
    if (!written.ok()) {
      results.push_back(written);
      continue;
    }
    if (absl::IsAlreadyExists(c.result.status())) {  // a batch's parent: cancelled with its children
      results.push_back(CancelBatch(c.job_id, now).status());
      continue;
    }
    if (c.result.ok()) {
      RecordAll(*c.result);
      if (op == BulkOp::kCancel && changed[i].state() == Job::RUNNING) StopRun(c.job_id);
    }
    results.push_back(c.result.status());
  }
  return results;
}

void PgJobManager::RetryNow(const std::string& job_id, v1::OperatorAction action,
                            const auth::Scope& scope, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  Job changed;
  auto events = store_->Transition(job_id, RetryChange(action, scope, absl::Now(), &changed));
  if (absl::IsNotFound(events.status())) {
    return done(watch::JobNotFound(*store_, job_id, scope));
  }
  if (!events.ok()) return done(events.status());
  RecordAll(*events);
  changed.clear_params();
  done(std::move(changed));
}

absl::StatusOr<v1::JobTypeInfo> PgJobManager::SetTypePause(const std::string& type,
                                                           std::optional<v1::TypePause> pause) {
  if (absl::Status s = ValidateTypePause(type, pause, *types_); !s.ok()) return s;
  // The claims of every server read the table: a pause holds at once, everywhere; a
  // resume is seen by each server's next claim (within a second for waiting workers).
  if (absl::Status s = store_->SetTypePause(type, pause); !s.ok()) return s;
  if (!pause) {
    absl::MutexLock lock(&mu_);
    ++ready_hints_;
    ready_cv_.SignalAll();
    hinted_.insert(type);
    granter_wake_ = true;
  }
  return TypeInfo(type);
}

v1::ListJobTypesResponse PgJobManager::ListTypes(const auth::Scope& scope) const {
  v1::ListJobTypesResponse response;
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  auto counts = store_->CountLive(now_ms);
  auto paused = store_->PausedTypes();
  for (const JobType* type : types_->All()) {
    v1::JobTypeInfo* info = response.add_types();
    *info = type->Info();
    if (auto limit = key_limits_.find(type->name); limit != key_limits_.end()) {
      int total = 0;
      auto keys = store_->KeysAtLimit(
          type->name, limit->second,
          scope.all_tenants ? std::nullopt : std::make_optional(scope.tenant), now_ms,
          static_cast<int>(kKeysAtLimitShown), &total);
      if (keys.ok()) {  // like the counts, left out if the store cannot say
        for (const KeyAtLimit& key : *keys) *info->add_keys_at_limit() = KeyAtLimitInfo(key);
        info->set_keys_at_limit_count(total);
      }
    }
    if (paused.ok()) {
      if (auto it = paused->find(type->name); it != paused->end()) *info->mutable_pause() = it->second;
    }
    if (counts.ok()) {
      if (auto it = counts->find(type->name); it != counts->end()) {
        info->set_queued(it->second.queued);
        info->set_running(it->second.running);
        if (it->second.oldest_ready_ms > 0) {
          *info->mutable_queue_latency() =
              ToProto(absl::Milliseconds(std::max<int64_t>(now_ms - it->second.oldest_ready_ms, 0)));
        }
      }
    }
    if (!type->in_server()) {  // the workers polling this server
      absl::MutexLock lock(&mu_);
      info->set_polling(workers_.Polling(type->name));
      info->set_workers(workers_.Workers(type->name, absl::Now() - absl::Minutes(1)));
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
  absl::flat_hash_map<std::string, absl::StatusOr<Job>> jobs;  // each read once
  for (const auto& wait : waits) {
    auto it = jobs.find(wait->job_id);
    if (it == jobs.end()) {
      // The wait was in scope.
      it = jobs.emplace(wait->job_id, Get(wait->job_id, auth::Scope::Everything())).first;
    }
    wait->done(it->second);
  }
}

// ---------------------------------------------------------------------------------------
// In-server runs

bool PgJobManager::Admits(const std::string& type) const {
  auto it = running_.find(type);
  return types_->Admits(type, it == running_.end() ? 0 : it->second);
}

// One runner claims at a time, for itself and every runner waiting beside it, in one
// transaction (the claims' commits, like every commit that NOTIFYs, queue one behind
// another in PostgreSQL: a claim per job would make that queue the limit); it hands the
// others their jobs.
std::optional<Attempt> PgJobManager::Acquire(const std::vector<std::string>& types) {
  absl::MutexLock lock(&mu_);
  ++acquiring_;
  for (;;) {
    for (auto it = handed_.begin(); it != handed_.end(); ++it) {
      if (std::find(types.begin(), types.end(), it->type) == types.end()) continue;
      Attempt attempt = std::move(*it);
      handed_.erase(it);
      --acquiring_;
      return attempt;
    }
    if (stop_running_) break;
    std::vector<std::string> admitted;
    for (const std::string& t : types) {
      if (Admits(t)) admitted.push_back(t);
    }
    if (!claiming_ && !admitted.empty()) {
      claiming_ = true;
      const int want = std::max<int>(1, acquiring_ - static_cast<int>(handed_.size()));
      const uint64_t hints = ready_hints_;
      mu_.Unlock();  // the claim is a round trip
      auto claimed = Claim(admitted, want, std::nullopt, [this](size_t) {
        return Holder{options_.server_id, options_.run_lease};
      });
      mu_.Lock();
      claiming_ = false;
      if (!claimed.ok()) {
        std::cerr << "jobstream-server: claiming a job: " << claimed.status() << "\n";
      } else {
        for (storage::pg::PgStore::Claimed& got : *claimed) {
          const Job& job = got.events.back().status();
          if (auto old = runs_.find(job.id()); old != runs_.end()) {
            // An earlier attempt whose end committed a moment ago (a retry due at once)
            // and is not yet accounted for, or whose lease was taken over: its writer
            // and its handler, if it still runs, are stale from now on.
            if (!old->second.control->stop.HasBeenNotified()) old->second.control->stop.Notify();
            ForgetRun(old);
          }
          Run& run = runs_[job.id()];
          run.lease_id = got.lease.lease_id();
          run.type = job.type();
          run.control = std::make_shared<RunControl>();
          run.attempt_deadline_ms = got.lease.attempt_deadline_ms();
          run.progress = job.progress();
          ++running_[job.type()];
          if (stop_running_) {  // stopped while claiming: the job goes back at once
            run.control->server_stopping = true;
            run.control->stop.Notify();
          }
          handed_.push_back(
              Attempt{job.id(), job.type(), job.attempt(),
                      std::make_shared<const google::protobuf::Struct>(std::move(got.params)),
                      run.control,
                      tracing::AttemptTraceparent(job.trace(),
                                                  tracing::AttemptKey(job, job.attempt()))});
        }
        if (!claimed->empty()) {
          ready_cv_.SignalAll();  // the runners take them; there may be more, for another claim
          continue;
        }
        if (ready_hints_ != hints) continue;  // a job became ready while claiming
      }
    }
    // Woken by a job becoming ready (Observe), a slot coming free or a claim that found
    // jobs; and every second, for jobs whose time came (run_at, retry backoff) and errors
    // that passed.
    ready_cv_.WaitWithTimeout(&mu_, absl::Seconds(1));
  }
  --acquiring_;
  return std::nullopt;
}

// The handler goes on at once; its reports, and then its end, are written in order by
// the run writers, a transaction for many runs at a time; PROGRESS reports that pile up
// meanwhile become one.
void PgJobManager::Report(const Attempt& attempt, const v1::Progress& progress) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(attempt.job_id);
  if (it == runs_.end() || it->second.control != attempt.control) return;  // stale
  Run& run = it->second;
  if (run.finished) return;  // nothing comes after its end
  // This server holds the run's lease, so its view of the progress is the stored one plus
  // what is queued: a report that moves nothing is dropped, and a PROGRESS after an
  // unwritten PROGRESS replaces it (RocksDB's rule), so no STEP is ever lost.
  const JobEvent::Type type = ApplyProgress(run.progress, progress);
  if (type == JobEvent::TYPE_UNSPECIFIED) return;
  if (type == JobEvent::PROGRESS && !run.reports.empty() &&
      run.reports.back().type == JobEvent::PROGRESS) {
    run.reports.back().progress = run.progress;
  } else {
    run.reports.push_back({run.progress, type});
  }
  Unwritten(attempt.job_id, run);
}

void PgJobManager::Finish(const Attempt& attempt, absl::StatusOr<google::protobuf::Value> outcome) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(attempt.job_id);
  if (it == runs_.end() || it->second.control != attempt.control || it->second.finished) return;
  it->second.finished = true;
  // Read now: a timeout or a stop that comes after the handler returned changes nothing.
  it->second.end = Run::End{std::move(outcome), attempt.control->timed_out.load(),
                            attempt.control->server_stopping.load()};
  Unwritten(attempt.job_id, it->second);
}

void PgJobManager::ForgetRun(absl::flat_hash_map<std::string, Run>::iterator it) {
  if (auto r = running_.find(it->second.type); r != running_.end() && --r->second == 0) {
    running_.erase(r);
  }
  runs_.erase(it);
  ready_cv_.SignalAll();  // a slot came free
}

void PgJobManager::Unwritten(const std::string& job_id, Run& run) {
  if (run.listed) return;  // its writer takes what came meanwhile next
  run.listed = true;
  unwritten_.push_back(job_id);
  unwritten_cv_.Signal();
}

void PgJobManager::WriteRuns() {
  // A run's writes as one writer took them: its reports in order, then its end, if any.
  struct Taken {
    std::string job_id;
    std::string lease_id;
    std::shared_ptr<RunControl> control;
    std::deque<Run::Report> reports;
    std::optional<Run::End> end;
  };
  absl::MutexLock lock(&mu_);
  for (;;) {
    while (unwritten_.empty() && !writes_stopped_) unwritten_cv_.Wait(&mu_);
    if (unwritten_.empty()) return;  // stopped, and all written
    std::vector<Taken> batch;
    while (!unwritten_.empty() && batch.size() < kMaxRunBatch) {
      auto it = runs_.find(unwritten_.front());
      unwritten_.pop_front();
      if (it == runs_.end()) continue;
      Run& run = it->second;
      if (run.reports.empty() && !run.end) {  // its reports were dropped (lease lost)
        run.listed = false;
        continue;
      }
      // Stays listed while it is written, so no other writer takes its later reports.
      batch.push_back(
          {it->first, run.lease_id, run.control, std::move(run.reports), std::move(run.end)});
      run.reports.clear();
      run.end.reset();
    }
    mu_.Unlock();
    // A change per report and one for the end, each run's in order: each event carries
    // the job as it stood after it.
    const absl::Time now = absl::Now();
    std::vector<storage::pg::PgStore::LeasedChange> changes;
    std::vector<size_t> firsts;  // of each run's changes
    for (const Taken& t : batch) {
      firsts.push_back(changes.size());
      for (const Run::Report& r : t.reports) {
        changes.push_back(
            {t.job_id, t.lease_id, false, [&r, now](Job& job, std::vector<JobEvent>& out) {
               ReportTo(job, r.progress, now, out);
               return absl::OkStatus();
             }});
      }
      if (t.end) {
        changes.push_back(
            {t.job_id, t.lease_id, true, [&t, now, this](Job& job, std::vector<JobEvent>& out) {
               const JobType& type = types_->Of(job.type());
               EndTo(job, type,
                     EndOfRun(job, type, t.end->outcome, t.end->timed_out, t.end->server_stopping,
                              options_.limits.max_params_bytes),
                     now, out);
               return absl::OkStatus();
             }});
      }
    }
    firsts.push_back(changes.size());
    WriteChanges(changes, firsts);  // a run's changes fail together, or not at all
    // Whether each run still holds its lease.
    std::vector<bool> lost(batch.size(), false);
    for (size_t i = 0; i < batch.size(); ++i) {
      for (size_t k = firsts[i]; k < firsts[i + 1]; ++k) {
        if (absl::IsFailedPrecondition(changes[k].result.status())) lost[i] = true;
      }
      if (!batch[i].end) continue;
      const auto& ended = changes[firsts[i + 1] - 1].result;  // its last change
      if (!ended.ok() && !absl::IsFailedPrecondition(ended.status())) {
        // The lease stays, and expires: the job is then retried by whichever server sweeps.
        std::cerr << "jobstream-server: ending an attempt of job " << batch[i].job_id << ": "
                  << ended.status() << "\n";
      }
    }
    mu_.Lock();
    run_written_.SignalAll();
    for (size_t i = 0; i < batch.size(); ++i) {
      const Taken& t = batch[i];
      auto it = runs_.find(t.job_id);
      if (it == runs_.end() || it->second.control != t.control) continue;
      Run& run = it->second;
      if (t.end) {  // the attempt is over, written or not
        ForgetRun(it);
        continue;
      }
      if (lost[i]) {
        // The lease is lost (taken over): what is queued would fail alike; the handler stops.
        if (!t.control->stop.HasBeenNotified()) t.control->stop.Notify();
        run.reports.clear();
      }
      if (run.reports.empty() && !run.end) {
        run.listed = false;
      } else {
        unwritten_.push_back(t.job_id);
      }
    }
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
      if (run.attempt_deadline_ms != 0 && now_ms >= run.attempt_deadline_ms && !run.finished &&
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
    if (options_.leader != nullptr) {
      leading_ = options_.leader->TryLead();
      if (leading_) SweepLeases(absl::Now());
    }
    if (options_.leader == nullptr || leading_) {
      SweepDependencies();
      SweepChildren();
    }
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
    const storage::LeaseRecord& lease = entry.second;  // (clang 14 cannot capture bindings)
    const int64_t timeout_ms = lease.attempt_deadline_ms();
    bool expired = false;
    std::string type;
    auto ended = EndLease(entry.first, lease.lease_id(), [&](const Job& job) {
      type = job.type();
      if (timeout_ms != 0 && timeout_ms <= absl::ToUnixMillis(now)) {
        return AttemptTimedOut(job, types_->Of(job.type()));
      }
      expired = true;
      return LeaseExpired(lease);
    });  // renewed or ended meanwhile: the lease fenced it
    if (ended.ok() && expired) server_metrics::CountLeaseExpired(type);
  }
}

void PgJobManager::StopRunning() {
  JobWaits::Waits waiting;
  WaiterList leasing;
  {
    absl::MutexLock lock(&mu_);
    stop_running_ = true;
    for (auto& [id, run] : runs_) {
      run.control->server_stopping = true;
      if (!run.control->stop.HasBeenNotified()) run.control->stop.Notify();
    }
    ready_cv_.SignalAll();
    waiting = waits_.TakeAll();
    leasing.swap(workers_.waiters());
    leasing.splice(leasing.end(), fresh_);
  }
  for (auto& wait : waiting) {
    wait->done(absl::UnavailableError("the server is shutting down; wait again later"));
  }
  for (auto& waiter : leasing) {
    waiter->done(absl::UnavailableError("the server is shutting down; lease again later"));
  }
}

void PgJobManager::Stop() {
  StopRunning();
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  if (renewer_.joinable()) renewer_.join();
  if (granter_.joinable()) granter_.join();
  inserts_->Close();  // what is queued is written first
  {
    absl::MutexLock lock(&mu_);
    writes_stopped_ = true;  // what the runs queued is written first
    unwritten_cv_.SignalAll();
  }
  for (std::thread& t : run_writers_) t.join();
  run_writers_.clear();
  leased_->Close();  // what workers asked is written first
  ended_->Close();
  children_ended_->Close();
}

// ---------------------------------------------------------------------------------------
// Listing and removal

absl::StatusOr<v1::ListJobsResponse> PgJobManager::List(const v1::ListJobsRequest& request,
                                                        const auth::Scope& scope) const {
  auto parsed = ParseListJobs(request, scope);
  if (!parsed.ok()) return parsed.status();
  const ListQuery& query = *parsed;
  storage::pg::PgStore::JobQuery rows;
  rows.states.assign(query.states.begin(), query.states.end());
  rows.type = query.type;
  if (!scope.all_tenants) rows.tenant = scope.tenant;
  if (!query.start.empty()) {
    auto position = storage::ParseByTimeKey(query.start);
    if (!position) return absl::InvalidArgumentError("page_token is not valid");
    rows.before_ms = position->first;
    rows.before_id = position->second;
  }
  // Read in rounds: the labels are matched here, so a page may take more rows than it holds.
  v1::ListJobsResponse response;
  size_t examined = 0;
  bool more = false, done = false;
  std::string last;
  while (!done) {
    rows.limit = static_cast<int>(std::min<size_t>(std::max<size_t>(query.page_size + 1, 100),
                                                   options_.list_scan_limit - examined + 1));
    int read = 0;
    absl::Status status = store_->VisitJobsNewestFirst(rows, [&](const Job& job) {
      ++read;
      if (absl::ToUnixMillis(v1::ToTime(job.create_time())) < query.after_ms) {
        done = true;  // newest first: one older ends the range
        return false;
      }
      if (static_cast<size_t>(response.jobs_size()) == query.page_size ||
          examined == options_.list_scan_limit) {
        more = done = true;
        return false;
      }
      ++examined;
      rows.before_ms = absl::ToUnixMillis(v1::ToTime(job.create_time()));
      rows.before_id = job.id();
      last = storage::ByTimeKey(rows.before_ms, rows.before_id);
      if (query.filter.Matches(job)) *response.add_jobs() = job;
      return true;
    });
    if (!status.ok()) return status;
    if (read < rows.limit) done = true;  // no rows past these
  }
  if (more) response.set_next_page_token(PageToken(last));
  return response;
}

void PgJobManager::Delete(const std::string& job_id, const auth::Scope& scope,
                          StatusCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  bool found = false;
  absl::Status status = store_->RemoveJob(
      job_id,
      [&](const Job& job) {
        found = true;
        if (!scope.Sees(job)) return watch::NoSuchJob(job_id);
        if (!v1::IsFinished(job.state())) return StateError(job, "cancel it first");
        return absl::OkStatus();
      },
      "deleted", absl::ToUnixMillis(absl::Now()));
  if (absl::IsNotFound(status) && !found) {
    // No such row: a tombstone may say what became of it.
    absl::StatusOr<Job> gone = watch::JobNotFound(*store_, job_id, scope);
    return done(gone.status());
  }
  done(status);
}

absl::StatusOr<int64_t> PgJobManager::RemoveFinished(absl::Time before, absl::string_view reason,
                                                     absl::Time now) {
  constexpr int kJobsPerRound = 500;  // one transaction each: short row locks
  int64_t total = 0;
  for (;;) {
    auto removed = store_->RemoveFinished(absl::ToUnixMillis(before), reason,
                                          absl::ToUnixMillis(now), kJobsPerRound);
    if (!removed.ok()) return removed.status();
    total += *removed;
    if (*removed < kJobsPerRound) return total;
  }
}

void PgJobManager::Purge(absl::Time before, CountCallback done) {
  done(RemoveFinished(before, "deleted", absl::Now()));
}

absl::Status PgJobManager::Sweep(absl::Time now) {
  // One server sweeps for all; without a leader (tests), whoever is asked.
  if (options_.leader != nullptr && !leading_) return absl::OkStatus();
  // Tombstones dated by the sweep's clock, as RocksDB's: the next sweep ages them from it.
  if (auto removed = RemoveFinished(now - options_.retention, "expired", now); !removed.ok()) {
    return removed.status();
  }
  // Chunks of uploads a crash cut off (a day gives any upload in progress time to end).
  if (auto removed = store_->RemoveOrphanChunks(absl::ToUnixMillis(now - absl::Hours(24)));
      !removed.ok()) {
    return removed.status();
  }
  // Buckets are full an hour after their last start (keyRate is at least one an hour).
  if (auto removed = store_->RemoveIdleLanes(absl::ToUnixMillis(now - absl::Hours(1)));
      !removed.ok()) {
    return removed.status();
  }
  return store_->RemoveTombstones(absl::ToUnixMillis(now - options_.retention)).status();
}

// ---------------------------------------------------------------------------------------
// Worker calls (EXTERNAL types)

namespace {

// Calls the waiter's done once: it is empty afterwards.
void Answer(LeaseWaiter& waiter, absl::StatusOr<v1::LeaseJobResponse> result) {
  LeaseCallback done = std::move(waiter.done);
  waiter.done = nullptr;
  done(std::move(result));
}

}  // namespace

WaiterList PgJobManager::Grant(const WaiterList& calls) {
  // Calls that ask for the same types of the same tenant's jobs share one claim: one
  // transaction, so one commit (which, as every commit that NOTIFYs, queues behind the
  // others in PostgreSQL) however many calls it answers. Its jobs go to the calls in the
  // order they came, each up to its max_jobs.
  std::map<std::pair<std::vector<std::string>, std::optional<std::string>>,
           std::vector<std::shared_ptr<LeaseWaiter>>>
      groups;
  for (const auto& call : calls) {
    std::vector<std::string> types = call->types;
    std::sort(types.begin(), types.end());
    groups[{std::move(types), call->tenant}].push_back(call);
  }
  WaiterList unanswered;
  for (const auto& entry : groups) {
    const auto& [types, tenant] = entry.first;
    const std::vector<std::shared_ptr<LeaseWaiter>>& group = entry.second;  // captured below
    std::vector<size_t> owner;  // of the k-th job claimed: its call's place in the group
    for (size_t i = 0; i < group.size(); ++i) owner.insert(owner.end(), group[i]->max_jobs, i);
    auto claimed = Claim(types, static_cast<int>(owner.size()), tenant, [&](size_t k) {
      const LeaseWaiter& call = *group[owner[k]];
      return Holder{call.worker_id, call.lease_duration};
    });
    if (!claimed.ok()) {
      for (const auto& call : group) Answer(*call, claimed.status());
      continue;
    }
    std::vector<v1::LeaseJobResponse> responses(group.size());
    for (size_t k = 0; k < claimed->size(); ++k) {
      storage::pg::PgStore::Claimed& got = (*claimed)[k];
      v1::LeasedJob* leased = responses[owner[k]].add_jobs();
      *leased->mutable_job() = got.events.back().status();  // as its STARTED event has it
      *leased->mutable_job()->mutable_params() = std::move(got.params);
      leased->set_lease_id(got.lease.lease_id());
      *leased->mutable_lease_expire_time() = ToProto(absl::FromUnixMillis(got.lease.deadline_ms()));
      leased->set_traceparent(
          tracing::AttemptTraceparent(leased->job().trace(),
                                        tracing::AttemptKey(leased->job(), leased->job().attempt())));
    }
    for (size_t i = 0; i < group.size(); ++i) {
      if (responses[i].jobs_size() > 0) {
        Answer(*group[i], std::move(responses[i]));
      } else {
        unanswered.push_back(group[i]);
      }
    }
  }
  return unanswered;
}

std::shared_ptr<LeaseWaiter> PgJobManager::LeaseJobs(const v1::LeaseJobRequest& request,
                                                     const std::string& default_worker_id,
                                                     const auth::Scope& scope, LeaseCallback done) {
  const absl::Time now = absl::Now();
  auto parsed = ParseLeaseJobs(request, default_worker_id, scope, *types_, now);
  if (!parsed.ok()) {
    done(parsed.status());
    return nullptr;
  }
  std::shared_ptr<LeaseWaiter> waiter = *std::move(parsed);
  waiter->done = std::move(done);
  {
    absl::MutexLock lock(&mu_);
    if (!stop_running_) {
      workers_.Seen(waiter->types, waiter->worker_id, now);
      fresh_.push_back(waiter);  // the granter tries it at once, with the others that came
      granter_wake_ = true;
      return waiter;
    }
  }
  Answer(*waiter, absl::UnavailableError("the server is shutting down; lease again later"));
  return nullptr;
}

void PgJobManager::GrantLoop() {
  absl::MutexLock lock(&mu_);
  absl::Time round_at = absl::Now();  // every waiter is tried once a second
  while (!stopped_) {
    absl::Time until = round_at;
    for (const auto& waiter : workers_.waiters()) until = std::min(until, waiter->deadline);
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](PgJobManager* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                                return self->stopped_ || self->granter_wake_;
                              },
                              this),
                          until);
    granter_wake_ = false;
    if (stopped_) break;
    const absl::Time now = absl::Now();
    const bool round = now >= round_at;
    if (round) round_at = now + absl::Seconds(1);
    // New calls are tried once, whatever their deadline; waiting ones when a job of theirs
    // may be ready, and each second.
    WaiterList due, tries;
    tries.swap(fresh_);
    for (const auto& w : tries) granting_.insert(w.get());
    WaiterList& waiters = workers_.waiters();
    for (auto it = waiters.begin(); it != waiters.end();) {
      const std::shared_ptr<LeaseWaiter>& w = *it;
      bool hinted = round;
      for (const std::string& t : w->types) hinted = hinted || hinted_.contains(t);
      if (w->deadline <= now) {
        due.push_back(w);
      } else if (hinted) {
        tries.push_back(w);
        granting_.insert(w.get());
      } else {
        ++it;
        continue;
      }
      it = waiters.erase(it);
    }
    hinted_.clear();
    workers_.Prune(now - absl::Minutes(1));
    mu_.Unlock();
    for (const auto& w : due) w->done(v1::LeaseJobResponse());
    WaiterList kept = Grant(tries);  // nothing yet: they wait on
    const absl::Time granted = absl::Now();
    mu_.Lock();
    WaiterList cancelled, ended;
    for (const auto& w : tries) granting_.erase(w.get());
    for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
      const std::shared_ptr<LeaseWaiter>& w = *it;
      if (abandoned_.erase(w.get()) > 0 || stop_running_) {
        cancelled.push_back(w);
      } else if (w->deadline <= granted) {
        ended.push_back(w);  // a call that does not wait, or whose wait is over
      } else {
        waiters.push_front(w);  // ahead of later calls, as they came
      }
    }
    abandoned_.clear();  // of calls answered meanwhile
    if (!cancelled.empty() || !ended.empty()) {
      mu_.Unlock();
      for (const auto& w : ended) w->done(v1::LeaseJobResponse());
      for (const auto& w : cancelled) {
        w->done(stop_running_ ? absl::UnavailableError("the server is shutting down")
                              : absl::CancelledError("the call was cancelled"));
      }
      mu_.Lock();
    }
  }
}

void PgJobManager::AbandonWait(const std::shared_ptr<LeaseWaiter>& waiter) {
  LeaseCallback done;
  {
    absl::MutexLock lock(&mu_);
    if (granting_.contains(waiter.get())) {
      abandoned_.insert(waiter.get());  // the granter answers it once its claim ends
      return;
    }
    WaiterList* list = &workers_.waiters();
    auto it = std::find(list->begin(), list->end(), waiter);
    if (it == list->end()) {
      list = &fresh_;
      it = std::find(list->begin(), list->end(), waiter);
      if (it == list->end()) return;  // answered already
    }
    done = std::move((*it)->done);
    list->erase(it);
  }
  done(absl::CancelledError("the call was cancelled"));
}

void PgJobManager::ReportWork(const v1::ReportProgressRequest& request, const auth::Scope& scope,
                              ProgressCallback done) {
  auto extension = ParseReportProgress(request);
  if (!extension.ok()) return done(extension.status());
  auto job_id = LeaseJobId(request.lease_id());
  if (!job_id.ok()) return done(job_id.status());
  const absl::Time now = absl::Now();
  storage::pg::PgStore::LeasedChange change;
  change.job_id = *job_id;
  change.lease_id = request.lease_id();
  change.renew_at_ms = absl::ToUnixMillis(now);
  if (extension->has_value()) change.renew_duration_ms = absl::ToInt64Milliseconds(**extension);
  change.change = [lease_id = request.lease_id(), progress = request.progress(), scope, now](
                      Job& job, std::vector<JobEvent>& out) {
    if (!scope.Sees(job)) return LeaseNotHeld(lease_id, job.id());
    ReportTo(job, progress, now, out);
    return absl::OkStatus();
  };
  QueueLeased({std::move(change), [done = std::move(done)](storage::pg::PgStore::LeasedChange& c) {
                 if (!c.result.ok()) return done(c.result.status());
                 v1::ReportProgressResponse response;
                 response.set_cancel_requested(c.job.cancel_requested());
                 *response.mutable_lease_expire_time() =
                     ToProto(absl::FromUnixMillis(c.lease.deadline_ms()));
                 done(std::move(response));
               }});
}

void PgJobManager::EndLeased(const std::string& lease_id, const auth::Scope& scope,
                             std::function<AttemptEnd(const Job&)> end, JobCallback done) {
  auto job_id = LeaseJobId(lease_id);
  if (!job_id.ok()) return done(job_id.status());
  storage::pg::PgStore::LeasedChange change;
  change.job_id = *job_id;
  change.lease_id = lease_id;
  change.end_lease = true;
  change.change = [this, lease_id, scope, end = std::move(end), now = absl::Now()](
                      Job& job, std::vector<JobEvent>& out) {
    if (!scope.Sees(job)) return LeaseNotHeld(lease_id, job.id());
    EndTo(job, types_->Of(job.type()), end(job), now, out);
    return absl::OkStatus();
  };
  QueueLeased({std::move(change), [done = std::move(done)](storage::pg::PgStore::LeasedChange& c) {
                 if (!c.result.ok()) return done(c.result.status());
                 done(c.result->back().status());
               }});
}

// Workers' reports and ends wait for a lease writer, which writes up to 128 of them
// in one transaction (PgStore::ChangeLeasedBatch) while the next batch gathers, as runs'
// writes are.
void PgJobManager::QueueLeased(PendingLeased pending) {
  if (!leased_->Post(pending)) {
    pending.change.result = absl::UnavailableError("the server is shutting down; call again later");
    pending.done(pending.change);
  }
}

void PgJobManager::WriteLeased(std::vector<PendingLeased>& batch) {
  std::vector<storage::pg::PgStore::LeasedChange> changes;
  std::vector<size_t> firsts;  // each call alone
  for (PendingLeased& p : batch) {
    firsts.push_back(changes.size());
    changes.push_back(std::move(p.change));
  }
  firsts.push_back(changes.size());
  WriteChanges(changes, firsts);
  for (size_t i = 0; i < batch.size(); ++i) batch[i].done(changes[i]);
}

void PgJobManager::WriteChanges(std::vector<storage::pg::PgStore::LeasedChange>& changes,
                                const std::vector<size_t>& firsts) {
  absl::Status written = store_->ChangeLeasedBatch(changes);
  if (!written.ok() && !absl::IsUnavailable(written) && firsts.size() > 2) {
    // Not PostgreSQL gone but a change it refused, maybe: a group at a time, so that the
    // refused one fails alone.
    for (size_t i = 0; i + 1 < firsts.size(); ++i) {
      std::vector<storage::pg::PgStore::LeasedChange> group(
          std::make_move_iterator(changes.begin() + firsts[i]),
          std::make_move_iterator(changes.begin() + firsts[i + 1]));
      for (auto& c : group) c.result = std::vector<JobEvent>();
      const absl::Status s = store_->ChangeLeasedBatch(group);
      for (size_t k = 0; k < group.size(); ++k) {
        changes[firsts[i] + k] = std::move(group[k]);
        if (!s.ok()) changes[firsts[i] + k].result = s;
      }
    }
    written = absl::OkStatus();
  }
  for (auto& c : changes) {
    if (!written.ok()) c.result = written;
    if (c.result.ok()) RecordAll(*c.result);
  }
}

void PgJobManager::CompleteWork(const v1::CompleteJobRequest& request, const auth::Scope& scope,
                                JobCallback done) {
  auto end = CompletionOf(request, options_.limits.max_params_bytes);
  if (!end.ok()) return done(end.status());
  EndLeased(
      request.lease_id(), scope, [end = *std::move(end)](const Job&) { return end; },
      std::move(done));
}

void PgJobManager::FailWork(const v1::FailJobRequest& request, const auth::Scope& scope,
                            JobCallback done) {
  auto end = FailureOf(request);
  if (!end.ok()) return done(end.status());
  EndLeased(
      request.lease_id(), scope, [end = *std::move(end)](const Job&) { return end; },
      std::move(done));
}

void PgJobManager::ReleaseWork(const v1::ReleaseJobRequest& request, const auth::Scope& scope,
                               JobCallback done) {
  EndLeased(
      request.lease_id(), scope, [](const Job& job) { return ReleaseOf(job.worker_id()); },
      std::move(done));
}

// ---------------------------------------------------------------------------------------
// Artifacts

absl::StatusOr<std::string> PgJobManager::HolderLease(const ArtifactHolder& holder) {
  if (!holder.lease_id.empty()) return holder.lease_id;
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(holder.job_id);
  if (it != runs_.end() && it->second.control == holder.control) return it->second.lease_id;
  return absl::FailedPreconditionError(
      absl::StrCat("the attempt of job ", holder.job_id, " that attached this has ended"));
}

absl::StatusOr<Job> PgJobManager::HeldBy(const ArtifactHolder& holder) {
  auto lease_id = HolderLease(holder);
  if (!lease_id.ok()) return lease_id.status();
  auto job = store_->GetLeasedJob(holder.job_id, *lease_id);
  if (!job.ok()) return job.status();
  if (!job->has_value() || !holder.scope.Sees(**job)) {
    return LeaseNotHeld(*lease_id, holder.job_id);
  }
  return **std::move(job);
}

absl::StatusOr<std::unique_ptr<ArtifactUpload>> PgJobManager::BeginArtifact(
    ArtifactHolder holder, const v1::ArtifactHeader& header) {
  const ArtifactLimits& limits = options_.artifacts;
  auto start = CheckArtifactHeader(header, limits);
  if (!start.ok()) return start.status();
  auto held = HeldBy(holder);
  if (!held.ok()) return held.status();
  const Job& job = *held;
  int64_t reserved = 0;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = artifact_reserved_.find(job.id()); it != artifact_reserved_.end()) {
      reserved = it->second;
    }
  }
  if (absl::Status s = CheckArtifactRoom(job, header.name(), start->size, reserved, limits);
      !s.ok()) {
    return s;
  }
  start->artifact.set_attempt(job.attempt());
  return std::make_unique<ArtifactUpload>(this, std::move(holder), std::move(start->artifact),
                                          start->size, header.sha256(), limits.max_artifact_bytes);
}

absl::StatusOr<std::unique_ptr<ArtifactUpload>> PgJobManager::BeginWorkerArtifact(
    const v1::ArtifactHeader& header, const auth::Scope& scope) {
  auto job_id = LeaseJobId(header.lease_id());
  if (!job_id.ok()) return job_id.status();
  return BeginArtifact(ArtifactHolder{*job_id, header.lease_id(), nullptr, scope}, header);
}

absl::Status PgJobManager::ReserveArtifactBytes(const ArtifactHolder& holder,
                                                const std::string& name, int64_t bytes) {
  // Each chunk also checks that the holder still holds the job.
  auto held = HeldBy(holder);
  if (!held.ok()) return held.status();
  const int64_t limit = options_.artifacts.max_job_artifact_bytes;
  absl::MutexLock lock(&mu_);
  int64_t& reserved = artifact_reserved_[holder.job_id];
  if (CommittedArtifactBytes(*held, name) + reserved + bytes > limit) {
    return absl::ResourceExhaustedError(absl::StrCat("job ", holder.job_id,
                                                     "'s artifacts are over the limit of ", limit,
                                                     " bytes per job (--max_job_artifact_bytes)"));
  }
  reserved += bytes;
  return absl::OkStatus();
}

absl::Status PgJobManager::WriteArtifactChunk(const std::string& job_id, uint64_t upload_id,
                                              uint32_t index, std::string data, bool) {
  return store_->WriteArtifactChunk(job_id, upload_id, index, data,
                                    absl::ToUnixMillis(absl::Now()));
}

void PgJobManager::CommitArtifact(const ArtifactHolder& holder, v1::Artifact artifact,
                                  const storage::ArtifactRecord& record, std::string tail,
                                  uint32_t tail_index, bool, int64_t reserved,
                                  ArtifactSink::Done done) {
  auto fail = [&](absl::Status s) {
    EndArtifactUpload(holder.job_id, record.upload_id(), /*wrote=*/true, reserved);
    done(s);
  };
  if (holder.lease_id.empty()) {
    // An in-server handler's: what it reported before it attached this is written first,
    // so its events keep the order it made them in.
    absl::MutexLock lock(&mu_);
    for (auto it = runs_.find(holder.job_id);
         it != runs_.end() && it->second.control == holder.control && it->second.listed;
         it = runs_.find(holder.job_id)) {
      run_written_.Wait(&mu_);
    }
  }
  auto held_by = HolderLease(holder);
  if (!held_by.ok()) return fail(held_by.status());
  const std::string& lease_id = *held_by;
  if (!tail.empty()) {
    if (absl::Status s = WriteArtifactChunk(holder.job_id, record.upload_id(), tail_index,
                                            std::move(tail), false);
        !s.ok()) {
      return fail(s);
    }
  }
  const absl::Time now = absl::Now();
  *artifact.mutable_create_time() = ToProto(now);
  auto events = store_->CommitArtifact(
      holder.job_id, lease_id, artifact.name(), record, [&](Job& job, std::vector<JobEvent>& out) {
        if (!holder.scope.Sees(job)) return LeaseNotHeld(lease_id, holder.job_id);
        // The count again, under the job's lock: another upload may have committed.
        if (absl::Status s =
                CheckArtifactRoom(job, artifact.name(), std::nullopt, 0, options_.artifacts);
            !s.ok()) {
          return s;
        }
        bool replaced = false;
        for (v1::Artifact& a : *job.mutable_artifacts()) {
          if (a.name() == artifact.name()) {
            a = artifact;
            replaced = true;
          }
        }
        if (!replaced) *job.add_artifacts() = artifact;
        *job.mutable_update_time() = ToProto(now);
        JobEvent event = EventOf(JobEvent::ARTIFACT, now);
        *event.mutable_artifact() = artifact;
        out.push_back(std::move(event));
        return absl::OkStatus();
      });
  if (!events.ok()) return fail(events.status());
  EndArtifactUpload(holder.job_id, record.upload_id(), /*wrote=*/false, reserved);
  done(std::move(artifact));
}

void PgJobManager::EndArtifactUpload(const std::string& job_id, uint64_t upload_id, bool wrote,
                                     int64_t reserved) {
  if (reserved > 0) {
    absl::MutexLock lock(&mu_);
    auto it = artifact_reserved_.find(job_id);
    if (it != artifact_reserved_.end() && (it->second -= reserved) <= 0) {
      artifact_reserved_.erase(it);
    }
  }
  // A chunk left by a failure here is an orphan, removed by the sweep a day later.
  if (wrote) store_->RemoveUpload(job_id, upload_id).IgnoreError();
}

absl::StatusOr<StoredArtifact> PgJobManager::FindArtifact(const std::string& job_id,
                                                          const std::string& name,
                                                          const auth::Scope& scope) const {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return s;
  if (absl::Status s = v1::ValidateArtifactName(name); !s.ok()) return s;
  auto job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) return watch::JobNotFound(*store_, job_id, scope);
  if (!job.ok()) return job.status();
  if (!scope.Sees(*job)) return watch::NoSuchJob(job_id);
  for (const v1::Artifact& a : job->artifacts()) {
    if (a.name() != name) continue;
    auto record = store_->GetArtifactRecord(job_id, name);
    if (absl::IsNotFound(record.status())) break;  // removed meanwhile
    if (!record.ok()) return record.status();
    return StoredArtifact{a, *std::move(record)};
  }
  return NoSuchArtifact(*job, name);
}

absl::Status PgJobManager::ReadArtifactChunk(const std::string& job_id,
                                             const StoredArtifact& artifact, uint32_t index,
                                             std::string* data) const {
  return store_->ReadArtifactChunk(job_id, artifact.record.upload_id(), index, data);
}

}  // namespace jobstream::jobs
