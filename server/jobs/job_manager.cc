#include "absl/strings/string_view.h"
#include "server/jobs/job_manager.h"

#include <algorithm>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/jobs/ids.h"
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

constexpr char kInServerLease[] = "in-server";

void SetError(Job& job, absl::StatusCode code, absl::string_view message) {
  job.mutable_error()->set_code(static_cast<int>(code));
  job.mutable_error()->set_message(std::string(message));
}

absl::Status StateError(const Job& job, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("job ", job.id(), " is ", Job::State_Name(job.state()), "; ", what));
}

}  // namespace

JobManager::JobManager(storage::JobStore* store, watch::EventHub* hub, const JobTypes* types,
                       ManagerOptions options)
    : store_(store),
      hub_(hub),
      types_(types),
      options_(options),
      committer_(store, [hub](const storage::CommittedEventPtr& event) { hub->Publish(event); }) {}

JobManager::~JobManager() { Stop(); }

void JobManager::Stop() {
  StopRunning();
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
                                JobCallback done) {
  const absl::Time now = absl::Now();
  Job& job = live.job;
  job.set_last_sequence(job.last_sequence() + 1);
  *job.mutable_update_time() = ToProto(now);
  storage::CommittedEventPtr event = AddRecordAndEvent(batch, job, MakeEvent(job, type, now));
  StatusCallback on_commit;
  if (done) {
    // The job exactly as this event left it (the event holds it already).
    on_commit = [event, done = std::move(done)](absl::Status s) {
      if (s.ok()) done(event->event.status()); else done(s);
    };
  }
  // Anything queued after a PROGRESS must stay after it, so it can no longer be replaced.
  live.pending_progress.reset();
  auto handle = committer_.Enqueue({std::move(batch), {std::move(event)}, std::move(on_commit)});
  if (!handle.ok()) return handle.status();
  if (type == JobEvent::PROGRESS) live.pending_progress = *std::move(handle);
  return absl::OkStatus();
}

void JobManager::EnqueueReady(LiveJob& live, int64_t ready_ms) {
  live.queue_key =
      storage::QueueKey(live.job.type(), live.job.priority(), ready_ms, live.job.id());
  const JobType* type = types_->Find(live.job.type());
  if (type == nullptr || type->handler == nullptr) return;  // not run in this server
  if (ready_ms <= absl::ToUnixMillis(absl::Now())) {
    ready_.insert(live.queue_key);
    ready_cv_.Signal();  // one runner takes it
    return;
  }
  // Runners sleep until the earliest scheduled job; wake one only if this one is earlier.
  const bool earliest = scheduled_.empty() || ready_ms < scheduled_.begin()->first;
  scheduled_.emplace(ready_ms, live.queue_key);
  if (earliest) ready_cv_.Signal();
}

void JobManager::Unqueue(const LiveJob& live) {
  if (ready_.erase(live.queue_key) == 0) {
    if (auto entry = storage::ParseQueueKey(live.queue_key)) {
      scheduled_.erase({entry->ready_ms, live.queue_key});
    }
  }
}

absl::Duration JobManager::Backoff(int attempt) const {
  absl::Duration d = options_.retry_backoff;
  for (int i = 1; i < attempt && d < options_.max_backoff; ++i) d *= 2;
  d = std::min(d, options_.max_backoff);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return d * std::uniform_real_distribution<double>(0.75, 1.25)(rng);
}

// ---------------------------------------------------------------------------------------
// Recovery

absl::Status JobManager::Recover() {
  const absl::Time now = absl::Now();
  // Jobs this server was running when it stopped hold an in-server lease.
  std::vector<std::string> interrupted;
  absl::Status scan = store_->Scan(Cf::kLeases, "", false, [&](auto key, auto value) {
    if (value == kInServerLease) interrupted.emplace_back(storage::LeaseKeyJobId(key));
    return true;
  });
  if (!scan.ok()) return scan;
  for (const std::string& id : interrupted) {
    auto job = store_->GetJob(id);
    if (!job.ok()) return job.status();
    Batch batch;
    batch.Delete(Cf::kLeases, storage::LeaseKey(storage::kNoDeadline, id));
    const std::string why = absl::StrCat("the server stopped while attempt ", job->attempt(),
                                         " was running");
    job->set_last_sequence(job->last_sequence() + 1);
    *job->mutable_update_time() = ToProto(now);
    SetError(*job, absl::StatusCode::kUnavailable, why);
    JobEvent::Type type;
    if (job->attempt() < job->max_attempts()) {
      type = JobEvent::RETRYING;
      job->set_state(Job::QUEUED);
      batch.Put(Cf::kQueue, storage::QueueKey(job->type(), job->priority(),
                                              absl::ToUnixMillis(now + Backoff(job->attempt())),
                                              id),
                "");
    } else {
      type = JobEvent::FAILED;
      job->set_state(Job::FAILED);
      *job->mutable_end_time() = ToProto(now);
      job->mutable_error()->set_message(why + "; no attempts left");
    }
    AddRecordAndEvent(batch, *job, MakeEvent(*job, type, now));
    if (absl::Status s = store_->Write(batch, /*sync=*/true); !s.ok()) return s;
  }
  // Everything in the queue is live.
  std::vector<storage::QueueEntry> queued;
  scan = store_->Scan(Cf::kQueue, "", false, [&](auto key, auto) {
    if (auto entry = storage::ParseQueueKey(key)) queued.push_back(*std::move(entry));
    return true;
  });
  if (!scan.ok()) return scan;
  absl::MutexLock lock(&mu_);
  for (const storage::QueueEntry& entry : queued) {
    auto job = store_->GetJob(entry.job_id);
    if (!job.ok()) return job.status();
    auto params = store_->GetParams(entry.job_id);
    if (!params.ok()) return params.status();
    LiveJob& live = live_[entry.job_id];
    live.job = *std::move(job);
    live.params = std::make_shared<const google::protobuf::Struct>(*std::move(params));
    EnqueueReady(live, entry.ready_ms);
    hub_->Track(live.job);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Client calls

void JobManager::Submit(const v1::SubmitRequest& request, JobCallback done) {
  const absl::Time now = absl::Now();
  if (absl::Status s = ValidateSubmit(request, *types_, options_.limits, now); !s.ok()) {
    return done(s);
  }
  const std::string& request_id = request.request_id();
  auto existing_job = [&]() -> std::optional<absl::StatusOr<Job>> {
    auto existing = store_->GetRequest(request_id);
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) return std::nullopt;
    return Get(**existing);
  };
  if (!request_id.empty()) {
    if (auto job = existing_job()) return done(*std::move(job));
  }

  Job job;
  job.set_id(NewJobId(now));
  job.set_type(request.type());
  *job.mutable_labels() = request.labels();
  job.set_state(Job::QUEUED);
  job.set_priority(request.priority());
  job.set_max_attempts(request.max_attempts() > 0 ? request.max_attempts()
                                                  : types_->Find(request.type())->max_attempts);
  if (request.has_run_at()) *job.mutable_run_at() = request.run_at();
  *job.mutable_create_time() = ToProto(now);
  job.set_request_id(request_id);
  const int64_t ready_ms = request.has_run_at()
                               ? std::max(absl::ToUnixMillis(ToTime(request.run_at())), int64_t{0})
                               : absl::ToUnixMillis(now);

  Batch batch;
  if (!request.params().fields().empty()) {
    batch.Put(Cf::kParams, job.id(), request.params().SerializeAsString());
  }
  batch.Put(Cf::kQueue, storage::QueueKey(job.type(), job.priority(), ready_ms, job.id()), "");
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
      } else {
        requests_in_flight_[request_id].push_back(std::move(done));
      }
    }
    if (!reply) {
      LiveJob& live = live_[job.id()];
      live.job = job;
      live.params = params;
      EnqueueReady(live, ready_ms);
      // The reply is the job as of its CREATED event (whatever happens to it meanwhile),
      // with its params; every twin submitted with the same request_id gets it too. Held
      // here as well, to answer with the error if the write cannot even be queued.
      auto answer = std::make_shared<JobCallback>(
          [this, params, request_id, done = std::move(done)](absl::StatusOr<Job> created) {
            if (created.ok()) *created->mutable_params() = *params;
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
      absl::Status status = Commit(live, JobEvent::CREATED, std::move(batch),
                                   [answer](absl::StatusOr<Job> job) { (*answer)(job); });
      if (!status.ok()) {  // nothing was queued: undo the in-memory changes
        Unqueue(live);
        live_.erase(job.id());
        reply = [answer, status] { (*answer)(status); };  // after the lock: it may take it
      }
    }
  }
  if (reply) reply();
}

absl::StatusOr<Job> JobManager::Get(const std::string& job_id) const {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return s;
  auto job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) return watch::JobNotFound(*store_, job_id);
  if (!job.ok()) return job.status();
  auto params = store_->GetParams(job_id);
  if (!params.ok()) return params.status();
  *job->mutable_params() = *std::move(params);
  return job;
}

absl::StatusOr<v1::ListJobsResponse> JobManager::List(const v1::ListJobsRequest& request) const {
  if (request.page_size() < 0 || request.page_size() > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", request.page_size(), " is outside 0..1000"));
  }
  if (absl::Status s = ValidateStates(request.states()); !s.ok()) return s;
  if (absl::Status s = ValidateLabels(request.labels()); !s.ok()) return s;
  if (!request.type().empty()) {
    if (absl::Status s = ValidateTypeName(request.type()); !s.ok()) return s;
  }
  std::string start;  // the by_time key to continue before (exclusive)
  if (!request.page_token().empty()) {
    bool ok = absl::WebSafeBase64Unescape(request.page_token(), &start) &&
              start.size() == 8 + kJobIdLength &&
              ValidateJobId(absl::string_view(start).substr(8)).ok();
    if (!ok) {
      return absl::InvalidArgumentError(
          "page_token is not one this server issued; pass next_page_token unchanged");
    }
  }
  watch::JobFilter filter;
  for (int s : request.states()) filter.states.insert(s);
  if (!request.type().empty()) filter.types.insert(request.type());
  for (const auto& [k, v] : request.labels()) filter.labels[k] = v;
  const size_t page_size = request.page_size() == 0 ? 50 : request.page_size();

  v1::ListJobsResponse response;
  size_t examined = 0;
  std::string last_key;
  bool more = false;
  absl::Status read_error;
  absl::Status scan = store_->Scan(Cf::kByTime, start, /*reverse=*/true, [&](auto key, auto) {
    if (key == start) return true;  // the previous page's last job
    if (response.jobs_size() == static_cast<int>(page_size) ||
        examined == options_.list_scan_limit) {
      more = true;
      return false;
    }
    ++examined;
    last_key = std::string(key);
    auto job = store_->GetJob(std::string(key.substr(8)));
    if (absl::IsNotFound(job.status())) return true;  // removed meanwhile
    if (!job.ok()) {
      read_error = job.status();
      return false;
    }
    if (filter.Matches(*job)) *response.add_jobs() = *std::move(job);
    return true;
  });
  if (!scan.ok()) return scan;
  if (!read_error.ok()) return read_error;
  if (more) response.set_next_page_token(absl::WebSafeBase64Escape(last_key));
  return response;
}

void JobManager::Cancel(const std::string& job_id, JobCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  absl::Status queue_error;
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(job_id);
    if (it != live_.end()) {
      LiveJob& live = it->second;
      const absl::Time now = absl::Now();
      Batch batch;
      if (live.job.state() == Job::QUEUED) {
        Unqueue(live);
        batch.Delete(Cf::kQueue, live.queue_key);
        live.job.set_state(Job::CANCELLED);
        *live.job.mutable_end_time() = ToProto(now);
        SetError(live.job, absl::StatusCode::kCancelled, "cancelled by request");
        queue_error = Commit(live, JobEvent::CANCELLED, std::move(batch), done);
        live_.erase(it);
      } else {
        // RUNNING: ask the handler to stop; it ends the job CANCELLED when it does. The
        // flag is recorded without an event: the job's next event carries it.
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
      if (queue_error.ok()) return;
    }
  }
  if (!queue_error.ok()) return done(queue_error);
  auto job = Get(job_id);
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
  batch.Delete(Cf::kByTime, storage::ByTimeKey(absl::ToUnixMillis(ToTime(job.create_time())), id));
  if (!job.request_id().empty()) batch.Delete(Cf::kRequests, job.request_id());
  batch.Put(Cf::kTombstones, id, storage::TombstoneValue(absl::ToUnixMillis(now), reason));
}

void JobManager::Delete(const std::string& job_id, StatusCallback done) {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return done(s);
  absl::Status live_error;
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(job_id);
    if (it != live_.end()) live_error = StateError(it->second.job, "cancel it first");
  }
  if (!live_error.ok()) return done(live_error);
  auto job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) return done(watch::JobNotFound(*store_, job_id));
  if (!job.ok()) return done(job.status());
  if (!IsFinished(job->state())) {
    return done(absl::AbortedError(absl::StrCat("job ", job_id, " is changing state; try again")));
  }
  Batch batch;
  RemovalBatch(*job, "deleted", absl::Now(), batch);
  auto handle = committer_.Enqueue({std::move(batch), {}, done});
  if (!handle.ok()) done(handle.status());
}

void JobManager::RemoveFinished(absl::Time ended_before, absl::string_view reason,
                                absl::Time now, CountCallback done) {
  constexpr size_t kJobsPerWrite = 256;
  std::vector<Job> finished;
  absl::Status read_error;
  absl::Status scan = store_->Scan(Cf::kByTime, "", false, [&](auto key, auto) {
    // A job ends after it is created: nothing created after ended_before qualifies.
    auto parsed = storage::ParseByTimeKey(key);
    if (!parsed || parsed->first >= absl::ToUnixMillis(ended_before)) return false;
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
  for (size_t i = 0; i < finished.size(); i += kJobsPerWrite) {
    Batch batch;
    const size_t end = std::min(finished.size(), i + kJobsPerWrite);
    for (size_t j = i; j < end; ++j) RemovalBatch(finished[j], reason, now, batch);
    StatusCallback on_commit;
    if (end == finished.size()) {  // the last write answers for all: a failure is sticky
      on_commit = [done, count](absl::Status s) {
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
    if (!parsed || parsed->first < cutoff) batch.Delete(Cf::kTombstones, std::string(key));
    return true;
  });
  if (!scan.ok() || batch.empty()) return scan;
  return store_->Write(batch, /*sync=*/true);
}

// ---------------------------------------------------------------------------------------
// Runner calls

namespace {
// Across types: higher priority first, then earlier ready time.
bool QueueOrder(const std::string& a, const std::string& b) {
  auto x = storage::ParseQueueKey(a);
  auto y = storage::ParseQueueKey(b);
  if (x->priority != y->priority) return x->priority > y->priority;
  return x->ready_ms < y->ready_ms;
}
}  // namespace

std::optional<Lease> JobManager::Acquire(const std::vector<std::string>& types) {
  absl::MutexLock lock(&mu_);
  while (!stop_running_) {
    const absl::Time now = absl::Now();
    // Scheduled jobs that are due become ready.
    const int64_t now_ms = absl::ToUnixMillis(now);
    while (!scheduled_.empty() && scheduled_.begin()->first <= now_ms) {
      ready_.insert(scheduled_.begin()->second);
      scheduled_.erase(scheduled_.begin());
    }
    // Every ready key sorts by type, then priority, then ready time: the first key with a
    // type's prefix is that type's next job.
    std::set<std::string>::iterator chosen = ready_.end();
    for (const std::string& type : types) {
      const std::string prefix = storage::QueuePrefix(type);
      auto it = ready_.lower_bound(prefix);
      if (it != ready_.end() && absl::StartsWith(*it, prefix) &&
          (chosen == ready_.end() || QueueOrder(*it, *chosen))) {
        chosen = it;
      }
    }
    if (chosen == ready_.end()) {
      const absl::Time wake = scheduled_.empty()
                                  ? now + absl::Seconds(10)
                                  : absl::FromUnixMillis(scheduled_.begin()->first);
      ready_cv_.WaitWithDeadline(&mu_, wake);
      continue;
    }
    const std::string job_id = storage::ParseQueueKey(*chosen)->job_id;
    ready_.erase(chosen);
    LiveJob& live = live_.at(job_id);
    Batch batch;
    batch.Delete(Cf::kQueue, live.queue_key);
    batch.Put(Cf::kLeases, storage::LeaseKey(storage::kNoDeadline, job_id), kInServerLease);
    live.queue_key.clear();
    live.job.set_state(Job::RUNNING);
    live.job.set_attempt(live.job.attempt() + 1);
    *live.job.mutable_start_time() = ToProto(now);
    live.job.clear_progress();
    live.control = std::make_shared<RunControl>();
    if (!Commit(live, JobEvent::STARTED, std::move(batch), nullptr).ok()) {
      return std::nullopt;  // the store failed; nothing more can run
    }
    return Lease{job_id, live.job.type(), live.job.attempt(), live.params, live.control};
  }
  return std::nullopt;
}

void JobManager::ReportStep(const Lease& lease, absl::string_view name, int index, int count,
                            double fraction) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(lease.job_id);
  if (it == live_.end() || it->second.job.attempt() != lease.attempt ||
      it->second.job.state() != Job::RUNNING) {
    return;
  }
  v1::Progress* p = it->second.job.mutable_progress();
  p->set_step(std::string(name));
  p->set_step_index(index);
  p->set_step_count(count);
  p->set_fraction(std::clamp(fraction, 0.0, 1.0));
  p->clear_message();
  Commit(it->second, JobEvent::STEP, {}, nullptr).IgnoreError();  // a failed store is sticky
}

void JobManager::ReportProgress(const Lease& lease, double fraction, absl::string_view message) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(lease.job_id);
  if (it == live_.end() || it->second.job.attempt() != lease.attempt ||
      it->second.job.state() != Job::RUNNING) {
    return;
  }
  LiveJob& live = it->second;
  v1::Progress* p = live.job.mutable_progress();
  p->set_fraction(std::clamp(fraction, 0.0, 1.0));
  p->set_message(std::string(message));
  if (live.pending_progress) {
    // The previous PROGRESS is not written yet and nobody saw it: replace it in place,
    // keeping its sequence, so fsyncs stay bounded however fast a job reports.
    const absl::Time now = absl::Now();
    *live.job.mutable_update_time() = ToProto(now);
    Batch batch;
    std::vector<storage::CommittedEventPtr> events = {
        AddRecordAndEvent(batch, live.job, MakeEvent(live.job, JobEvent::PROGRESS, now))};
    if (committer_.TryReplace(live.pending_progress, std::move(batch), std::move(events))) {
      return;
    }
  }
  Commit(live, JobEvent::PROGRESS, {}, nullptr).IgnoreError();
}

void JobManager::Finish(const Lease& lease, absl::StatusOr<google::protobuf::Value> outcome) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(lease.job_id);
  if (it == live_.end() || it->second.job.attempt() != lease.attempt ||
      it->second.job.state() != Job::RUNNING) {
    return;
  }
  LiveJob& live = it->second;
  Job& job = live.job;
  const absl::Time now = absl::Now();
  live.control.reset();
  Batch batch;
  batch.Delete(Cf::kLeases, storage::LeaseKey(storage::kNoDeadline, job.id()));
  auto requeue = [&](absl::Time ready) {
    job.set_state(Job::QUEUED);
    EnqueueReady(live, absl::ToUnixMillis(ready));
    batch.Put(Cf::kQueue, live.queue_key, "");
  };
  // An outcome the handler reached stands; only an attempt cut short by shutdown is redone.
  JobEvent::Type type;
  if (outcome.ok()) {
    type = JobEvent::SUCCEEDED;
    job.set_state(Job::SUCCEEDED);
    *job.mutable_result() = *std::move(outcome);
    job.clear_error();
    job.mutable_progress()->set_fraction(1.0);
  } else if (outcome.status().code() == absl::StatusCode::kCancelled && job.cancel_requested()) {
    type = JobEvent::CANCELLED;
    job.set_state(Job::CANCELLED);
    SetError(job, absl::StatusCode::kCancelled, "cancelled by request");
  } else if (lease.control->server_stopping.load()) {
    // Interrupted by shutdown, not by the job: the attempt does not count.
    type = JobEvent::RETRYING;
    SetError(job, absl::StatusCode::kUnavailable,
             "the server stopped; the job runs again when it starts");
    job.set_attempt(job.attempt() - 1);
    requeue(now);
  } else if (outcome.status().code() == absl::StatusCode::kUnavailable &&
             job.attempt() < job.max_attempts() && !job.cancel_requested()) {
    type = JobEvent::RETRYING;
    SetError(job, outcome.status().code(), outcome.status().message());
    requeue(now + Backoff(job.attempt()));
  } else {
    type = JobEvent::FAILED;
    job.set_state(Job::FAILED);
    SetError(job, outcome.status().code(), outcome.status().message());
  }
  if (IsFinished(job.state())) *job.mutable_end_time() = ToProto(now);
  Commit(live, type, std::move(batch), nullptr).IgnoreError();
  if (IsFinished(job.state())) live_.erase(it);
}

void JobManager::StopRunning() {
  absl::MutexLock lock(&mu_);
  stop_running_ = true;
  ready_cv_.SignalAll();
  for (auto& [id, live] : live_) {
    if (!live.control) continue;
    live.control->server_stopping.store(true);
    if (!live.control->stop.HasBeenNotified()) live.control->stop.Notify();
  }
}

}  // namespace jobstream::jobs
