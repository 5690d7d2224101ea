#include "server/jobs/job_manager.h"

#include <pthread.h>

#include <algorithm>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/jobs/graph.h"
#include "server/jobs/ids.h"
#include "server/jobs/list_request.h"
#include "server/jobs/transitions.h"
#include "server/jobs/validation.h"
#include "server/metrics/server_metrics.h"
#include "server/storage/deliveries.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

using storage::Batch;
using storage::Cf;
using v1::IsFinished;
using v1::Job;
using v1::JobEvent;
using v1::ToProto;
using v1::ToTime;

namespace {

// Before leases were records, an in-server run was stored under be64(INT64_MAX) | id with
// this value. Recovery still understands it.
constexpr char kLegacyInServerLease[] = "in-server";

// A paused type's key in the meta column family: the prefix and the type's name.
constexpr char kPausedPrefix[] = "paused/";

// Whether a job as an event left it leaves memory once that event is written: QUEUED or
// WAITING (its place in the queue stays; a batch's parent stays), or ended.
bool LeavesMemory(const Job& job) {
  return ((job.state() == Job::QUEUED || job.state() == Job::WAITING) && !job.has_batch()) ||
         IsFinished(job.state());
}

}  // namespace

JobManager::JobManager(storage::JobStore* store, watch::EventHub* hub, const JobTypes* types,
                       ManagerOptions options)
    : store_(store),
      hub_(hub),
      types_(types),
      options_(options),
      committer_(
          store,
          [this](const storage::CommittedEventPtr& event) {
            RecordStateChange(event->event);
            // Let go of a job its written event leaves alone before anyone sees that event:
            // a Delete or Cancel sent on seeing a job end finds it written, rather than
            // being told it is still changing state.
            if (LeavesMemory(event->event.status())) {
              Settle(event->event.job_id(), event->event.sequence());
            }
            hub_->Publish(event);
          },
          [this](const absl::Status& error) {
            absl::MutexLock lock(&mu_);
            MarkStoreFailed(error);
          }),
      queue_(types->KeyLimits()) {
  dispatcher_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-dispatch");
    DispatchLoop();
  });
}

JobManager::~JobManager() { Stop(); }

void JobManager::Stop() {
  StopRunning();
  {
    absl::MutexLock lock(&mu_);
    stop_dispatch_ = true;
    dispatch_cv_.Signal();
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  committer_.Stop();
}

size_t JobManager::live_jobs() const {
  absl::MutexLock lock(&mu_);
  return live_.size();
}

JobEvent JobManager::MakeEvent(const Job& job, JobEvent::Type type, absl::Time now) const {
  JobEvent event;
  event.set_job_id(job.id());
  event.set_sequence(job.last_sequence());
  *event.mutable_time() = ToProto(now);
  event.set_type(type);
  *event.mutable_status() = job;  // the working copy never holds params
  v1::StampAction(event);
  return event;
}

storage::CommittedEventPtr JobManager::AddRecordAndEvent(Batch& batch, const Job& job,
                                                        JobEvent event) const {
  // Serialized once: these bytes are both what is stored and what watchers are sent.
  storage::CommittedEventPtr committed = storage::MakeCommittedEvent(std::move(event));
  batch.Put(Cf::kJobs, job.id(), job.SerializeAsString());
  batch.Put(Cf::kEvents, storage::EventKey(job.id(), committed->event.sequence()),
            committed->wire);
  return committed;
}

absl::Status JobManager::Commit(LiveJob& live, JobEvent::Type type, Batch batch,
                                JobCallback done, const v1::Artifact* artifact) {
  if (!store_failure_.ok()) return store_failure_;
  Staged staged;
  Stage(live, type, batch, staged, std::move(done), artifact);
  auto handle = EnqueueStaged(std::move(batch), std::move(staged));
  if (!handle.ok()) return handle.status();
  if (type == JobEvent::PROGRESS) live.pending_progress = *std::move(handle);
  return absl::OkStatus();
}

void JobManager::Stage(LiveJob& live, JobEvent::Type type, Batch& batch, Staged& staged,
                       JobCallback done, const v1::Artifact* artifact,
                       const v1::ChildEnded* child) {
  const absl::Time now = absl::Now();
  Job& job = live.job;
  job.set_last_sequence(job.last_sequence() + 1);
  *job.mutable_update_time() = ToProto(now);
  if (job.state() != live.indexed_state) Reindex(job, live.indexed_state, batch);
  live.indexed_state = job.state();
  JobEvent made = MakeEvent(job, type, now);
  if (artifact != nullptr) *made.mutable_artifact() = *artifact;
  if (child != nullptr) *made.mutable_child() = *child;
  // A delivery the job's webhook wants is stored with its event, so it survives a crash.
  const int64_t now_ms = absl::ToUnixMillis(now);
  std::optional<v1::WebhookDelivery> delivery;
  if (webhook_sender_ != nullptr) delivery = storage::DeliveryOf(job, job.last_sequence(), type, now);
  const bool deliver = delivery.has_value();
  if (deliver) {
    batch.Put(Cf::kWebhooks, storage::EventKey(job.id(), job.last_sequence()),
              delivery->SerializeAsString());
    batch.Put(Cf::kWebhookQueue,
              storage::WebhookQueueKey(now_ms, job.id(), job.last_sequence()), "");
  }
  storage::CommittedEventPtr event = AddRecordAndEvent(batch, job, std::move(made));
  staged.events.push_back(event);
  // The job exactly as this event left it (the event holds it already). A job this event
  // leaves QUEUED or WAITING may leave memory once it is written (a batch's parent stays:
  // its children's ends are written with its own events).
  // A job that ended stays in memory until then too, so nothing reads its older record
  // meanwhile (a Cancel, a Submit depending on it, a batch's count). Once written, the
  // committer's publish lets it go, before anyone sees or is answered with the event; a
  // write that failed lets it go here.
  const bool finishes = v1::IsTerminal(type);
  const bool settles = LeavesMemory(job);
  const bool awaited = finishes && dependents_.contains(job.id());
  if (settles || deliver || done) {
    staged.done.push_back([this, event, settles, finishes, awaited, deliver, now_ms,
                           done = std::move(done)](absl::Status s) {
      if (settles && !s.ok()) Settle(event->event.job_id(), event->event.sequence());
      if (finishes && s.ok()) AnswerWaits(event->event.job_id());
      if (awaited && s.ok()) DependencyEnded(event->event.status());
      if (deliver && s.ok()) {
        webhook_sender_->Schedule(event->event.job_id(), event->event.sequence(), now_ms);
      }
      if (!done) return;
      if (s.ok()) done(event->event.status()); else done(s);
    });
  }
  // Anything queued after a PROGRESS must stay after it, so it can no longer be replaced.
  live.pending_progress.reset();
  // A batch's child (or its `then` job) ended: its parent moves in the same write.
  if (finishes && !job.parent_id().empty()) StageParent(job, batch, staged);
}

absl::StatusOr<storage::GroupCommitter::Handle> JobManager::EnqueueStaged(Batch batch,
                                                                          Staged staged) {
  StatusCallback on_commit;
  if (!staged.done.empty()) {
    on_commit = [done = std::move(staged.done)](absl::Status s) {
      for (const StatusCallback& d : done) d(s);
    };
  }
  auto handle =
      committer_.Enqueue({std::move(batch), std::move(staged.events), std::move(on_commit)});
  if (!handle.ok()) return handle.status();
  for (auto& then : staged.after_enqueue) then();
  return handle;
}

void JobManager::Reindex(const Job& job, Job::State old_state, Batch& batch) {
  const int64_t create_ms = absl::ToUnixMillis(ToTime(job.create_time()));
  if (old_state != Job::STATE_UNSPECIFIED) {
    batch.Delete(Cf::kByState, storage::ByStateKey(old_state, create_ms, job.id()));
    batch.Delete(Cf::kByTypeState,
                 storage::ByTypeStateKey(job.type(), old_state, create_ms, job.id()));
  }
  batch.Put(Cf::kByState, storage::ByStateKey(job.state(), create_ms, job.id()), "");
  batch.Put(Cf::kByTypeState,
            storage::ByTypeStateKey(job.type(), job.state(), create_ms, job.id()), "");
}

void JobManager::Settle(const std::string& job_id, int64_t sequence) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(job_id);
  // Commits are delivered in order: if the job's newest event is written, all of it is.
  if (it == live_.end() || it->second.job.last_sequence() != sequence) return;
  if (LeavesMemory(it->second.job)) live_.erase(it);
}

JobManager::LiveJob& JobManager::Hold(Job job) {
  LiveJob& live = live_[job.id()];
  live.indexed_state = job.state();
  if (job.state() == Job::QUEUED) live.queue_key = QueueKeyOf(job);
  live.job = std::move(job);
  return live;
}

absl::StatusOr<JobManager::LiveJob*> JobManager::Load(const std::string& job_id,
                                                      bool with_params) {
  auto it = live_.find(job_id);
  LiveJob* held = it == live_.end() ? nullptr : &it->second;
  if (held == nullptr) {
    auto job = store_->GetJob(job_id);
    if (!job.ok()) return job.status();
    held = &Hold(*std::move(job));
  }
  LiveJob& live = *held;
  if (with_params && !live.params) {
    auto params = store_->GetParams(job_id);
    if (!params.ok()) return params.status();
    live.params = std::make_shared<const google::protobuf::Struct>(*std::move(params));
  }
  return &live;
}

// ---------------------------------------------------------------------------------------
// The queue

std::string JobManager::QueueKeyOf(const Job& job) {
  return storage::QueueKey(job.type(), job.tenant(), job.priority(), v1::ReadyMs(job), job.id(),
                           job.concurrency_key());
}

void JobManager::SetQueueKey(LiveJob& live, Batch& batch) const {
  live.queue_key = QueueKeyOf(live.job);
  batch.Put(Cf::kQueue, live.queue_key, "");
}

void JobManager::Enqueue(LiveJob& live) {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  queue_.Add(live.queue_key, now_ms);
  const int64_t ready_ms = storage::ParseQueueKey(live.queue_key)->ready_ms;
  if (ready_ms <= now_ms) {
    Wake(live.job.type());
  } else {
    WakeDispatcherBy(ready_ms);
  }
}

void JobManager::Unqueue(LiveJob& live, Batch& batch) {
  queue_.Remove(live.queue_key, absl::ToUnixMillis(absl::Now()));
  batch.Delete(Cf::kQueue, live.queue_key);
  live.queue_key.clear();
}

bool JobManager::Admits(absl::string_view type) const {
  if (paused_.contains(type)) return false;
  auto it = running_.find(type);
  return types_->Admits(type, it == running_.end() ? 0 : it->second);
}

absl::StatusOr<v1::JobTypeInfo> JobManager::SetTypePause(const std::string& type,
                                                         std::optional<v1::TypePause> pause) {
  if (absl::Status s = ValidateTypePause(type, pause, *types_); !s.ok()) return s;
  // Written at once, beside the committer's groups: a key of its own, in no job's order.
  Batch batch;
  const std::string key = absl::StrCat(kPausedPrefix, type);
  if (pause) {
    batch.Put(Cf::kMeta, key, pause->SerializeAsString());
  } else {
    batch.Delete(Cf::kMeta, key);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!store_failure_.ok()) return store_failure_;
  }
  if (absl::Status s = store_->Write(batch, /*sync=*/true); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("the store failed a write: ", s.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (pause) {
      paused_[type] = *pause;
    } else if (paused_.erase(type) > 0) {
      ready_cv_.SignalAll();  // its queued jobs may go
      if (!workers_.waiters().empty()) ServeWaiters();
    }
  }
  return TypeInfo(type);
}

absl::Status JobManager::LoadPauses() {
  absl::MutexLock lock(&mu_);
  paused_.clear();
  return store_->Scan(Cf::kMeta, kPausedPrefix, false, [&](auto key, auto value) {
    if (!absl::StartsWith(key, kPausedPrefix)) return false;
    v1::TypePause pause;
    if (pause.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      paused_[std::string(key.substr(strlen(kPausedPrefix)))] = std::move(pause);
    }
    return true;
  });
}

void JobManager::Wake(absl::string_view type) {
  const JobType* t = types_->Find(type);
  if (t == nullptr || !queue_.HasReady(type)) return;
  if (t->in_server()) {
    ready_cv_.Signal();  // one runner takes it
  } else if (!workers_.waiters().empty()) {
    ServeWaiters();
  }
}

void JobManager::WakeDispatcherBy(int64_t when_ms) {
  if (dispatch_wake_ms_ != 0 && dispatch_wake_ms_ <= when_ms) return;
  dispatch_wake_ms_ = when_ms;
  dispatch_cv_.Signal();
}

// ---------------------------------------------------------------------------------------
// The dispatcher: everything that happens because time passed.

void JobManager::DispatchLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_dispatch_) {
    if (!store_failure_.ok() && !TryRecoverStore() && stop_dispatch_) break;
    Replies replies;
    const absl::Time now = absl::Now();
    Dispatch(now, replies);
    if (!replies.empty()) {
      mu_.Unlock();
      for (auto& reply : replies) reply();
      mu_.Lock();
      continue;  // time passed meanwhile
    }
    // While the store fails, it is asked again every second.
    int64_t wake = absl::ToUnixMillis(now + (store_failure_.ok() ? absl::Seconds(10)
                                                                 : absl::Seconds(1)));
    for (std::optional<int64_t> t : {queue_.NextDue(), lease_deadlines_.Next(),
                                     timeouts_.Next(), waits_.NextDue()}) {
      if (t) wake = std::min(wake, *t);
    }
    for (const auto& waiter : workers_.waiters()) {
      wake = std::min(wake, absl::ToUnixMillis(waiter->deadline));
    }
    dispatch_wake_ms_ = wake;
    dispatch_cv_.WaitWithDeadline(&mu_, absl::FromUnixMillis(wake));
    dispatch_wake_ms_ = 0;
  }
}

void JobManager::Dispatch(absl::Time now, Replies& replies) {
  const int64_t now_ms = absl::ToUnixMillis(now);
  ExpireWaits(now_ms, replies);
  WaiterList& waiters = workers_.waiters();
  for (auto it = waiters.begin(); it != waiters.end();) {
    if ((*it)->deadline > now) {
      ++it;
      continue;
    }
    replies.push_back([done = std::move((*it)->done)] { done(v1::LeaseJobResponse()); });
    it = waiters.erase(it);
  }
  workers_.Prune(now - absl::Minutes(1));
  if (!store_failure_.ok()) return;  // nothing starts or ends until the store is back

  for (const std::string& type : queue_.Promote(now_ms)) Wake(type);

  for (const std::string& id : lease_deadlines_.TakeDue(now_ms)) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    // A failed store is sticky: its error is not lost here.
    const std::string type = it->second.job.type();
    if (EndAttempt(id, LeaseExpired(it->second.lease), nullptr).ok()) {
      server_metrics::CountLeaseExpired(type);
    }
  }

  for (const std::string& id : timeouts_.TakeDue(now_ms)) {
    auto it = live_.find(id);
    if (it == live_.end() || it->second.job.state() != Job::RUNNING) continue;
    LiveJob& live = it->second;
    if (live.control) {
      // The runner stops the handler; Finish then records the timeout.
      live.control->timed_out.store(true);
      if (!live.control->stop.HasBeenNotified()) live.control->stop.Notify();
      continue;
    }
    EndAttempt(id, AttemptTimedOut(live.job, types_->Of(live.job.type())), nullptr)
        .IgnoreError();  // a failed store is sticky
  }
}

// ---------------------------------------------------------------------------------------
// Recovery

absl::Status JobManager::Recover() {
  if (absl::Status s = BackfillIndexes(); !s.ok()) return s;
  if (absl::Status s = LoadPauses(); !s.ok()) return s;
  if (absl::Status s = RemoveAbandonedUploads(); !s.ok()) return s;
  {
    absl::MutexLock lock(&mu_);
    // An attempt cut short by the stop ends as any failed attempt does: retried, or
    // FAILED with no attempt left, or CANCELLED if a cancel was asked for.
    if (absl::Status s = LoadLive(AttemptEnd::kFailed, "the server stopped"); !s.ok()) return s;
  }
  // Durable before serving.
  absl::Notification written;
  absl::Status result;
  if (absl::Status s = committer_.Barrier([&](absl::Status s) {
        result = s;
        written.Notify();
      });
      !s.ok()) {
    return s;
  }
  written.WaitForNotification();
  return result;
}

absl::Status JobManager::LoadLive(AttemptEnd::Kind interrupted_end, absl::string_view why) {
  // Jobs this server was running hold an in-server lease: their attempt was cut short.
  // Leases held by workers stand.
  std::vector<std::pair<std::string, std::string>> interrupted;  // lease key, job id
  std::vector<std::pair<std::string, storage::LeaseRecord>> leased;
  absl::Status scan = store_->Scan(Cf::kLeases, "", false, [&](auto key, auto value) {
    if (value == kLegacyInServerLease && key.size() == 8 + kJobIdLength) {
      interrupted.emplace_back(std::string(key), std::string(key.substr(8)));
      return true;
    }
    storage::LeaseRecord record;
    if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
    if (record.lease_id().empty()) {
      interrupted.emplace_back(std::string(key), std::string(key));
    } else {
      leased.emplace_back(std::string(key), std::move(record));
    }
    return true;
  });
  if (!scan.ok()) return scan;
  // Everything in the queue is live; only its place is held in memory.
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  scan = store_->Scan(Cf::kQueue, "", false, [&](auto key, auto) {
    queue_.Add(std::string(key), now_ms);
    return true;
  });
  if (!scan.ok()) return scan;
  for (auto& [id, record] : leased) {
    auto live = Load(id, /*with_params=*/false);
    if (!live.ok()) return live.status();
    hub_->Track((*live)->job);
    (*live)->lease = std::move(record);
    ++running_[(*live)->job.type()];
    queue_.Hold((*live)->job.type(), (*live)->job.tenant(), (*live)->job.concurrency_key());
    lease_deadlines_.Set(id, (*live)->lease.deadline_ms());
    WakeDispatcherBy((*live)->lease.deadline_ms());
    if ((*live)->lease.attempt_deadline_ms() != 0) {
      timeouts_.Set(id, (*live)->lease.attempt_deadline_ms());
      WakeDispatcherBy((*live)->lease.attempt_deadline_ms());
    }
  }
  // Before the interrupted attempts end: a job waiting for one moves when it does.
  if (absl::Status s = LoadWaiting(); !s.ok()) return s;
  for (const auto& [lease_key, id] : interrupted) {
    if (lease_key != id) {  // the old key form; EndAttempt removes the new one
      Batch legacy;
      legacy.Delete(Cf::kLeases, lease_key);
      committer_.Enqueue({std::move(legacy), {}, nullptr}).IgnoreError();
    }
    auto live = Load(id, /*with_params=*/false);
    if (!live.ok()) return live.status();
    ++running_[(*live)->job.type()];
    queue_.Hold((*live)->job.type(), (*live)->job.tenant(), (*live)->job.concurrency_key());
    AttemptEnd end = Interrupted((*live)->job, why);
    end.kind = interrupted_end;
    if (absl::Status s = EndAttempt(id, std::move(end), nullptr); !s.ok()) return s;
  }
  dispatch_cv_.Signal();  // the queue may hold jobs that are due
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// A failed write

void JobManager::MarkStoreFailed(const absl::Status& error) {
  if (!store_failure_.ok()) return;
  store_failure_ = error;  // the committer's sticky error, which says it all
  store_failed_at_ = store_failure_logged_at_ = absl::Now();
  server_metrics::StoreFailed();
  std::cerr << "jobstream-server: " << store_failure_.message()
            << "; reads and watches go on, running jobs are stopped and run again once it "
               "takes writes\n";
  // Their progress can no longer be kept; they run again once the store is back.
  for (auto& [id, live] : live_) {
    if (live.control && !live.control->stop.HasBeenNotified()) live.control->stop.Notify();
  }
  dispatch_cv_.Signal();  // the dispatcher sees to the recovery
}

bool JobManager::TryRecoverStore() {
  // Every in-server attempt has returned (each was told to stop) ...
  if (!mu_.AwaitWithTimeout(absl::Condition(
                                +[](JobManager* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                                  return self->attempts_in_server_ == 0 || self->stop_dispatch_;
                                },
                                this),
                            absl::Seconds(1)) ||
      stop_dispatch_) {
    return false;
  }
  // ... and everything queued before the failure has failed and been answered (delivery
  // takes mu_). Nothing new is queued meanwhile: the committer refuses it.
  mu_.Unlock();
  committer_.AwaitIdle();
  mu_.Lock();
  if (absl::Status resumed = committer_.Resume(); !resumed.ok()) {
    if (absl::Now() - store_failure_logged_at_ > absl::Seconds(30)) {  // said now and then
      store_failure_logged_at_ = absl::Now();
      std::cerr << "jobstream-server: the store still takes no writes: " << resumed.message()
                << "\n";
    }
    return false;
  }
  // Memory may be ahead of the store: drop it and read the store again, as at start,
  // keeping what uploads in progress have reserved against their job's artifact limit.
  absl::flat_hash_map<std::string, int64_t> reserved;
  for (const auto& [id, live] : live_) {
    if (live.artifact_bytes_reserved > 0) reserved[id] = live.artifact_bytes_reserved;
  }
  live_.clear();
  queue_ = JobQueue(types_->KeyLimits());
  running_.clear();
  lease_deadlines_ = DeadlineIndex();
  timeouts_ = DeadlineIndex();
  const absl::Status failure = std::exchange(store_failure_, absl::OkStatus());
  if (absl::Status loaded = LoadLive(AttemptEnd::kRequeue, "the store failed a write");
      !loaded.ok()) {
    store_failure_ = failure;  // tried again in a second
    std::cerr << "jobstream-server: reloading after the store failed: " << loaded << "\n";
    return false;
  }
  for (const auto& [id, bytes] : reserved) {
    if (auto it = live_.find(id); it != live_.end()) it->second.artifact_bytes_reserved = bytes;
  }
  server_metrics::StoreRecovered();
  const absl::Duration down = absl::Now() - store_failed_at_;
  std::cerr << "jobstream-server: the store takes writes again after "
            << absl::FormatDuration(absl::Trunc(down, absl::Milliseconds(1))) << "; "
            << live_.size() << " live jobs read back\n";
  ready_cv_.SignalAll();
  ServeWaiters();
  if (webhook_sender_ != nullptr) webhook_sender_->Reload();
  return true;
}

absl::Status JobManager::BackfillIndexes() {
  constexpr char kIndexed[] = "indexes";
  bool built = false;
  absl::Status scan = store_->Scan(Cf::kMeta, kIndexed, false, [&](auto key, auto) {
    built = key == kIndexed;
    return false;
  });
  if (!scan.ok() || built) return scan;
  Batch batch;
  size_t in_batch = 0;
  absl::Status write;
  scan = store_->Scan(Cf::kJobs, "", false, [&](auto, auto value) {
    Job job;
    if (!job.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
    Reindex(job, Job::STATE_UNSPECIFIED, batch);
    if (++in_batch == 10000) {
      write = store_->Write(batch, /*sync=*/false);
      batch.Clear();
      in_batch = 0;
    }
    return write.ok();
  });
  if (!scan.ok()) return scan;
  if (!write.ok()) return write;
  batch.Put(Cf::kMeta, kIndexed, "by_state,by_type_state");
  return store_->Write(batch, /*sync=*/true);
}

// ---------------------------------------------------------------------------------------
// Client calls

void JobManager::SubmitMade(const v1::SubmitRequest& request, const auth::Scope& scope,
                            MadeJob made, JobCallback done) {
  const absl::Time now = absl::Now();
  if (absl::Status s = ValidateSubmit(request, *types_, options_.limits, now); !s.ok()) {
    return done(s);
  }
  if (options_.disk != nullptr) {
    if (absl::Status s = options_.disk->Admit(request.ByteSizeLong()); !s.ok()) return done(s);
  }
  if (absl::Status s = CheckSubmitWebhook(request, options_.webhook_policy); !s.ok()) {
    return done(s);
  }
  // A request_id is the tenant's own: another tenant's same id is another request. So is
  // a unique_key.
  const std::string request_id =
      request.request_id().empty() ? "" : storage::RequestKey(scope.tenant, request.request_id());
  const std::string unique =
      request.unique_key().empty() ? "" : storage::UniqueKey(scope.tenant, request.unique_key());
  auto existing_job = [&]() -> std::optional<absl::StatusOr<Job>> {
    auto existing = store_->GetRequest(request_id);
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) return std::nullopt;
    return Get(**existing, auth::Scope::Everything());
  };
  if (!request_id.empty()) {
    if (auto job = existing_job()) return done(*std::move(job));
  }

  Job job = NewJob(request, *types_->Find(request.type()), scope.tenant, now);
  if (made) made(job);

  Batch batch;
  if (!request.params().fields().empty()) {
    batch.Put(Cf::kParams, job.id(), request.params().SerializeAsString());
  }
  batch.Put(Cf::kByTime, storage::ByTimeKey(absl::ToUnixMillis(now), job.id()), "");
  if (!request_id.empty()) batch.Put(Cf::kRequests, request_id, job.id());

  auto params = std::make_shared<const google::protobuf::Struct>(request.params());
  std::function<void()> reply;  // run after the lock when the call ends here
  {
    absl::MutexLock lock(&mu_);
    if (!request_id.empty()) {
      auto in_flight = requests_in_flight_.find(request_id);
      if (in_flight != requests_in_flight_.end()) {
        in_flight->second.push_back(std::move(done));  // answered when the first commits
        return;
      }
      // A twin may have committed between the check above and this lock.
      if (auto twin = existing_job()) {
        reply = [done = std::move(done), twin = *std::move(twin)] { done(twin); };
      }
    }
    if (!reply && !unique.empty()) {
      auto holder = UniqueHolder(unique, now);
      if (!holder.ok()) {
        reply = [done = std::move(done), error = holder.status()] { done(error); };
      } else if (holder->has_value()) {
        reply = [this, id = **holder, done = std::move(done)] { AnswerDeduplicated(id, done); };
      }
    }
    if (const int64_t queued = queue_.queued_of_tenant(scope.tenant);
        !reply && queued >= options_.limits.max_queued_per_tenant) {
      reply = [done = std::move(done), full = QueueFull(scope.tenant, queued)] { done(full); };
    }
    // The job waits for its dependencies (graph.h), or not; or they settled it already.
    Job created = job;
    JobEvent::Type then = JobEvent::TYPE_UNSPECIFIED;
    if (!reply && !request.depends_on().empty()) {
      auto dependencies = ReadDependencies(request, scope);
      if (dependencies.ok()) {
        then = StartWaiting(job, *dependencies, now, &created);
      } else {
        reply = [done = std::move(done), error = dependencies.status()] { done(error); };
      }
    }
    if (!reply && !request_id.empty()) {
      requests_in_flight_[request_id].push_back(std::move(done));  // twins wait with it
    }
    if (!reply) {
      if (!unique.empty()) {
        batch.Put(Cf::kRequests, unique, job.id());
        uniques_in_flight_[unique] = job.id();
      }
      LiveJob& live = live_[job.id()];
      live.job = created;
      live.params = params;
      if (created.state() == Job::QUEUED) SetQueueKey(live, batch);
      // The reply is the job as of its first events (whatever happens to it meanwhile),
      // with its params; every twin submitted with the same request_id gets it too. Held
      // here as well, to answer with the error if the write cannot even be queued.
      auto answer = std::make_shared<JobCallback>(
          [this, params, request_id, unique, id = job.id(),
           done = std::move(done)](absl::StatusOr<Job> created) {
            if (created.ok()) *created->mutable_params() = *params;
            if (!unique.empty()) {  // written (or not at all): found in the store from now
              absl::MutexLock lock(&mu_);
              if (auto it = uniques_in_flight_.find(unique);
                  it != uniques_in_flight_.end() && it->second == id) {
                uniques_in_flight_.erase(it);
              }
            }
            std::vector<JobCallback> waiters;
            if (request_id.empty()) {
              waiters.push_back(done);
            } else {
              absl::MutexLock lock(&mu_);
              waiters = std::move(requests_in_flight_[request_id]);
              requests_in_flight_.erase(request_id);
            }
            for (auto& waiter : waiters) waiter(created);
          });
      // Answered with the job as its last event leaves it.
      JobCallback on_commit = [answer](absl::StatusOr<Job> job) { (*answer)(job); };
      const bool two = then != JobEvent::TYPE_UNSPECIFIED;
      absl::Status status =
          Commit(live, JobEvent::CREATED, std::move(batch), two ? nullptr : on_commit);
      if (status.ok() && two) {
        const int64_t created_sequence = live.job.last_sequence();
        live.job = job;
        live.job.set_last_sequence(created_sequence);
        status = Commit(live, then, Batch(), on_commit);  // after CREATED, or not at all
      }
      if (status.ok()) {
        if (job.state() == Job::QUEUED) Enqueue(live);
        if (job.state() == Job::WAITING) Await(job);
      } else {  // nothing was queued: undo the in-memory changes
        live_.erase(job.id());
        reply = [answer, status] { (*answer)(status); };  // after the lock: it may take it
      }
    }
  }
  if (reply) reply();
}

absl::StatusOr<Job> JobManager::Get(const std::string& job_id, const auth::Scope& scope) const {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return s;
  auto job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) return watch::JobNotFound(*store_, job_id, scope);
  if (!job.ok()) return job.status();
  if (!scope.Sees(*job)) return watch::NoSuchJob(job_id);
  auto params = store_->GetParams(job_id);
  if (!params.ok()) return params.status();
  *job->mutable_params() = *std::move(params);
  if (job->has_webhook()) {
    auto deliveries = store_->ListWebhookDeliveries(job_id);
    if (!deliveries.ok()) return deliveries.status();
    for (v1::WebhookDelivery& d : *deliveries) *job->add_webhook_deliveries() = std::move(d);
  }
  return job;
}

absl::StatusOr<v1::ListJobsResponse> JobManager::List(const v1::ListJobsRequest& request,
                                                      const auth::Scope& scope) const {
  auto parsed = ParseListJobs(request, scope);
  if (!parsed.ok()) return parsed.status();
  const ListQuery& query = *parsed;
  const std::string& start = query.start;
  const watch::JobFilter& filter = query.filter;
  const size_t page_size = query.page_size;

  // What to read, newest first: the index ranges of the states (and type) asked for,
  // merged by position (create time | id); creation order when neither is asked. A page
  // token is such a position, whichever ranges are read.
  struct Range {
    std::unique_ptr<rocksdb::Iterator> it;
    std::string prefix;
    bool Valid() const { return it->Valid() && it->key().starts_with(prefix); }
    absl::string_view Position() const {
      return absl::string_view(it->key().data(), it->key().size()).substr(prefix.size());
    }
  };
  std::vector<Range> ranges;
  auto add = [&](Cf cf, std::string prefix) {
    Range range{store_->NewIterator(cf), std::move(prefix)};
    const std::string seek =
        range.prefix + (start.empty() ? std::string(storage::kByTimeKeyLength, '\xff') : start);
    range.it->SeekForPrev(seek);
    if (!start.empty() && range.it->Valid() && range.it->key() == seek) range.it->Prev();
    ranges.push_back(std::move(range));
  };
  std::set<int> states = query.states;
  if (states.empty() && !request.type().empty()) {
    for (int state = Job::State_MIN + 1; state <= Job::State_MAX; ++state) states.insert(state);
  }
  for (int state : states) {
    if (request.type().empty()) {
      add(Cf::kByState, storage::ByStatePrefix(state));
    } else {
      add(Cf::kByTypeState, storage::ByTypeStatePrefix(request.type(), state));
    }
  }
  if (states.empty()) add(Cf::kByTime, "");

  v1::ListJobsResponse response;
  size_t examined = 0;
  std::string last_key;
  bool more = false;
  for (;;) {
    Range* newest = nullptr;
    for (Range& range : ranges) {
      if (range.Valid() && (newest == nullptr || range.Position() > newest->Position())) {
        newest = &range;
      }
    }
    if (newest == nullptr) break;
    if (query.after_ms != INT64_MIN) {  // newest first: one older ends the range
      auto position = storage::ParseByTimeKey(newest->Position());
      if (position && position->first < query.after_ms) break;
    }
    if (response.jobs_size() == static_cast<int>(page_size) ||
        examined == options_.list_scan_limit) {
      more = true;
      break;
    }
    ++examined;
    last_key = std::string(newest->Position());
    newest->it->Prev();
    if (last_key.size() != storage::kByTimeKeyLength) continue;
    auto job = store_->GetJob(last_key.substr(8));
    if (absl::IsNotFound(job.status())) continue;  // removed meanwhile
    if (!job.ok()) return job.status();
    if (filter.Matches(*job)) *response.add_jobs() = *std::move(job);
  }
  for (const Range& range : ranges) {
    if (!range.it->status().ok()) return storage::FromRocks(range.it->status(), "listing jobs");
  }
  if (more) response.set_next_page_token(PageToken(last_key));
  return response;
}

void JobManager::Cancel(const std::string& job_id, const v1::OperatorAction& action,
                        const auth::Scope& scope, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  absl::Status queue_error;
  std::optional<absl::StatusOr<Job>> ended;  // answered after the lock
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(job_id);
    if (it == live_.end()) {
      // A queued job whose writes are all committed is only in the store (and the queue).
      auto stored = store_->GetJob(job_id);
      if (stored.ok() && (stored->state() == Job::QUEUED || stored->state() == Job::WAITING) &&
          scope.Sees(*stored)) {
        Hold(*std::move(stored));
        it = live_.find(job_id);
      }
    }
    if (it != live_.end() && !scope.Sees(it->second.job)) {
      queue_error = watch::NoSuchJob(job_id);  // answered after the lock, as every reply is
    } else if (it != live_.end()) {
      LiveJob& live = it->second;
      const absl::Time now = absl::Now();
      Batch batch;
      if (live.job.state() == Job::QUEUED) {
        Unqueue(live, batch);
        CancelQueued(live.job, now);
        Acted(live.job, action, live.job.last_sequence() + 1);
        queue_error = Commit(live, JobEvent::CANCELLED, std::move(batch), done);
      } else if (live.job.state() == Job::WAITING && live.job.has_batch()) {
        queue_error = CancelBatch(live, done);  // it leaves memory once queued
      } else if (live.job.state() == Job::WAITING) {
        StopAwaiting(live.job);
        CancelWaiting(live.job, now);
        Acted(live.job, action, live.job.last_sequence() + 1);
        queue_error = Commit(live, JobEvent::CANCELLED, std::move(batch), done);
      } else if (v1::IsFinished(live.job.state())) {
        // Ended, its end on its way to the store: answered as it ended.
        ended = live.job.state() == Job::CANCELLED
                    ? absl::StatusOr<Job>(live.job)
                    : absl::StatusOr<Job>(StateError(live.job, "only a live job can be cancelled"));
      } else {
        // RUNNING: ask whoever runs it to stop (a handler sees it at once, a worker in its
        // next ReportProgress reply); the job ends CANCELLED when it does. The flag is
        // recorded without an event: the job's next event carries it.
        if (!live.job.cancel_requested()) Acted(live.job, action, 0);
        live.job.set_cancel_requested(true);
        if (live.control && !live.control->stop.HasBeenNotified()) live.control->stop.Notify();
        *live.job.mutable_update_time() = ToProto(now);
        batch.Put(Cf::kJobs, job_id, live.job.SerializeAsString());
        live.pending_progress.reset();
        auto job = std::make_shared<Job>(live.job);
        queue_error = committer_
                          .Enqueue({std::move(batch), {}, [job, done](absl::Status s) {
                                      if (s.ok()) done(*job); else done(s);
                                    }})
                          .status();
      }
      if (queue_error.ok() && !ended) return;
    }
  }
  if (ended) return done(*std::move(ended));
  if (!queue_error.ok()) return done(queue_error);
  auto job = Get(job_id, scope);
  if (!job.ok()) return done(job.status());
  switch (job->state()) {
    case Job::CANCELLED: return done(*std::move(job));
    case Job::SUCCEEDED:
    case Job::FAILED: return done(StateError(*job, "only a live job can be cancelled"));
    default:  // its last transition is not committed yet
      return done(absl::AbortedError(
          absl::StrCat("job ", job_id, " is changing state; try again")));
  }
}

void JobManager::RemovalBatch(const Job& job, absl::string_view reason, absl::Time now,
                              Batch& batch) const {
  const std::string& id = job.id();
  batch.Delete(Cf::kJobs, id);
  batch.Delete(Cf::kParams, id);
  batch.DeleteRange(Cf::kEvents, storage::EventKey(id, 0), storage::EventKey(id, INT64_MAX));
  const int64_t create_ms = absl::ToUnixMillis(ToTime(job.create_time()));
  batch.Delete(Cf::kByTime, storage::ByTimeKey(create_ms, id));
  batch.Delete(Cf::kByState, storage::ByStateKey(job.state(), create_ms, id));
  batch.Delete(Cf::kByTypeState, storage::ByTypeStateKey(job.type(), job.state(), create_ms, id));
  if (job.has_batch()) {
    batch.Delete(Cf::kRequests, storage::BatchChildrenKey(id));
    if (!job.request_id().empty()) {
      batch.Delete(Cf::kRequests, storage::BatchRequestKey(job.tenant(), job.request_id()));
    }
  } else if (!job.request_id().empty()) {
    batch.Delete(Cf::kRequests, storage::RequestKey(job.tenant(), job.request_id()));
  }
  ForgetUnique(job, batch);
  if (job.has_webhook()) {
    batch.DeleteRange(Cf::kWebhooks, storage::EventKey(id, 0), storage::EventKey(id, INT64_MAX));
  }
  if (job.artifacts_size() > 0) {
    auto [begin, end] = storage::JobArtifactsRange(id);
    batch.DeleteRange(Cf::kArtifacts, std::move(begin), std::move(end));
  }
  batch.Put(Cf::kTombstones, id,
            storage::TombstoneValue(absl::ToUnixMillis(now), reason, job.tenant()));
}

void JobManager::Delete(const std::string& job_id, const auth::Scope& scope,
                        StatusCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  absl::Status live_error;
  int64_t end_sequence = 0;  // of a job that ended and is still held
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(job_id);
    if (it != live_.end() && !scope.Sees(it->second.job)) {
      live_error = watch::NoSuchJob(job_id);
    } else if (it != live_.end() && IsFinished(it->second.job.state())) {
      // Ended and still held: its end may be written but not yet published (a watcher that
      // read it from the store has seen it). The stored record says which.
      end_sequence = it->second.job.last_sequence();
    } else if (it != live_.end()) {
      live_error = StateError(it->second.job, "cancel it first");
    }
  }
  if (!live_error.ok()) return done(live_error);
  auto job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) return done(watch::JobNotFound(*store_, job_id, scope));
  if (!job.ok()) return done(job.status());
  if (!scope.Sees(*job)) return done(watch::NoSuchJob(job_id));
  if (job->state() == Job::QUEUED || job->state() == Job::WAITING) {
    return done(StateError(*job, "cancel it first"));
  }
  if (!IsFinished(job->state()) || job->last_sequence() < end_sequence) {
    return done(absl::AbortedError(absl::StrCat("job ", job_id, " is changing state; try again")));
  }
  Batch batch;
  RemovalBatch(*job, "deleted", absl::Now(), batch);
  StatusCallback on_commit = done;
  if (job->artifacts_size() > 0) {
    on_commit = [this, job_id, done](absl::Status s) {
      if (s.ok()) CompactRemovedArtifacts({job_id});
      done(s);
    };
  }
  auto handle = committer_.Enqueue({std::move(batch), {}, std::move(on_commit)});
  if (!handle.ok()) done(handle.status());
}

void JobManager::RemoveFinished(absl::Time ended_before, absl::string_view reason,
                                absl::Time now, CountCallback done) {
  constexpr size_t kJobsPerWrite = 256;
  std::vector<Job> finished;
  absl::Status read_error;
  absl::Status scan = store_->Scan(Cf::kByTime, "", false, [&](auto key, auto) {
    // A job ends after it is created: nothing created after ended_before qualifies. Keys
    // hold whole milliseconds, so a job created in ended_before's millisecond still may.
    auto parsed = storage::ParseByTimeKey(key);
    if (!parsed || parsed->first > absl::ToUnixMillis(ended_before)) return false;
    auto job = store_->GetJob(parsed->second);
    if (absl::IsNotFound(job.status())) return true;
    if (!job.ok()) {
      read_error = job.status();
      return false;
    }
    if (IsFinished(job->state()) && ToTime(job->end_time()) < ended_before) {
      finished.push_back(*std::move(job));
    }
    return true;
  });
  if (!scan.ok()) return done(scan);
  if (!read_error.ok()) return done(read_error);
  if (finished.empty()) return done(0);  // no synced write for nothing (every sweep)
  const int64_t count = static_cast<int64_t>(finished.size());
  std::vector<std::string> with_artifacts;
  for (const Job& job : finished) {
    if (job.artifacts_size() > 0) with_artifacts.push_back(job.id());
  }
  for (size_t i = 0; i < finished.size(); i += kJobsPerWrite) {
    Batch batch;
    const size_t end = std::min(finished.size(), i + kJobsPerWrite);
    for (size_t j = i; j < end; ++j) RemovalBatch(finished[j], reason, now, batch);
    StatusCallback on_commit;
    if (end == finished.size()) {  // the last write answers for all: a failure is sticky
      on_commit = [this, done, count, with_artifacts](absl::Status s) {
        if (s.ok()) CompactRemovedArtifacts(with_artifacts);
        if (s.ok()) done(count); else done(s);
      };
    }
    auto handle = committer_.Enqueue({std::move(batch), {}, std::move(on_commit)});
    if (!handle.ok()) return done(handle.status());
  }
}

void JobManager::Purge(absl::Time before, CountCallback done) {
  RemoveFinished(before, "deleted", absl::Now(), std::move(done));
}

absl::Status JobManager::Sweep(absl::Time now) {
  absl::Notification written;
  absl::Status result;
  RemoveFinished(now - options_.retention, "expired", now,
                 [&](absl::StatusOr<int64_t> removed) {
                   result = removed.status();
                   written.Notify();
                 });
  written.WaitForNotification();
  if (!result.ok()) return result;
  // Tombstones outlive their job by another retention period.
  Batch batch;
  const int64_t cutoff = absl::ToUnixMillis(now - options_.retention);
  absl::Status scan = store_->Scan(Cf::kTombstones, "", false, [&](auto key, auto value) {
    auto parsed = storage::ParseTombstoneValue(value);
    if (!parsed || parsed->removed_ms < cutoff) batch.Delete(Cf::kTombstones, std::string(key));
    return true;
  });
  if (!scan.ok() || batch.empty()) return scan;
  return store_->Write(batch, /*sync=*/true);
}

v1::ListJobTypesResponse JobManager::ListTypes(const auth::Scope& scope) const {
  v1::ListJobTypesResponse response;
  const absl::Time now = absl::Now();
  const absl::Time since = now - absl::Minutes(1);
  absl::MutexLock lock(&mu_);
  for (const JobType* type : types_->All()) {
    v1::JobTypeInfo* info = response.add_types();
    *info = type->Info();
    info->set_queued(queue_.queued(type->name));
    if (auto pause = paused_.find(type->name); pause != paused_.end()) {
      *info->mutable_pause() = pause->second;
    }
    if (auto oldest = queue_.OldestReadyMs(type->name)) {
      *info->mutable_queue_latency() =
          ToProto(std::max(now - absl::FromUnixMillis(*oldest), absl::ZeroDuration()));
    }
    auto running = running_.find(type->name);
    info->set_running(running == running_.end() ? 0 : running->second);
    if (type->key_limit.limited()) {
      int total = 0;
      for (const KeyAtLimit& key : queue_.AtLimit(type->name,
                                                  scope.all_tenants ? nullptr : &scope.tenant,
                                                  kKeysAtLimitShown, &total)) {
        *info->add_keys_at_limit() = KeyAtLimitInfo(key);
      }
      info->set_keys_at_limit_count(total);
    }
    if (!type->in_server()) {
      info->set_polling(workers_.Polling(type->name));
      info->set_workers(workers_.Workers(type->name, since));
    }
  }
  return response;
}

void JobManager::StopRunning() {
  Replies replies;
  {
    absl::MutexLock lock(&mu_);
    stop_running_ = true;
    ready_cv_.SignalAll();
    for (auto& [id, live] : live_) {
      if (!live.control) continue;
      live.control->server_stopping.store(true);
      if (!live.control->stop.HasBeenNotified()) live.control->stop.Notify();
    }
    for (auto& waiter : workers_.waiters()) {
      replies.push_back([done = std::move(waiter->done)] {
        done(absl::UnavailableError("the server is shutting down; lease again later"));
      });
    }
    workers_.waiters().clear();
    for (auto& wait : waits_.TakeAll()) {
      replies.push_back([wait] {
        wait->done(absl::UnavailableError("the server is shutting down; wait again later"));
      });
    }
  }
  for (auto& reply : replies) reply();
}

}  // namespace jobstream::jobs
