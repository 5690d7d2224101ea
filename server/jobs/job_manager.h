// JobManager: every state transition of every job happens here. A transition updates the
// job's in-memory working copy, assigns the next sequence, and queues one batch (job
// record + event + index changes) on the group committer, all under one lock, so each
// job's events are committed — and then published by the committer — in sequence order.
//
// Live (QUEUED or RUNNING) jobs are held in memory; finished jobs only in the store.
//
//   QUEUED --Acquire--> RUNNING --Finish--> SUCCEEDED | FAILED | CANCELLED
//      ^                   |
//      +---- RETRYING -----+   (retryable failure with attempts left, or server stop)
//   QUEUED --Cancel--> CANCELLED
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/job_types.h"
#include "server/jobs/validation.h"
#include "server/storage/group_commit.h"
#include "server/storage/job_store.h"
#include "server/watch/event_hub.h"

namespace jobstream::jobs {

struct ManagerOptions {
  Limits limits;
  // First retry delay; doubles per attempt, with ±25% jitter, up to max_backoff.
  absl::Duration retry_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  // Finished jobs are removed this long after they end; their tombstones as long again.
  absl::Duration retention = absl::Hours(168);
  // Records ListJobs examines per call before it returns a partial page.
  size_t list_scan_limit = 10000;
};

// Shared by the manager and the runner thread of one attempt.
struct RunControl {
  absl::Notification stop;  // notified on cancel request or server stop
  std::atomic<bool> server_stopping{false};
};

// One attempt of an in-server job, handed to a runner thread.
struct Lease {
  std::string job_id;
  std::string type;
  int attempt = 0;
  std::shared_ptr<const google::protobuf::Struct> params;
  std::shared_ptr<RunControl> control;
};

class JobManager {
 public:
  using JobCallback = std::function<void(absl::StatusOr<v1::Job>)>;
  using StatusCallback = std::function<void(absl::Status)>;
  using CountCallback = std::function<void(absl::StatusOr<int64_t>)>;

  // `store`, `hub` and `types` must outlive the manager. Callbacks run on the committer's
  // delivery thread (or inline for errors found before anything is written).
  JobManager(storage::JobStore* store, watch::EventHub* hub, const JobTypes* types,
             ManagerOptions options);
  ~JobManager();

  // Before serving: loads live jobs into memory and the hub. Jobs that were RUNNING in
  // this server when it stopped are retried (RETRYING event) or, with no attempts left,
  // FAILED — each with an event saying why.
  absl::Status Recover() ABSL_LOCKS_EXCLUDED(mu_);

  // Client calls. done receives the job as committed, or the error.
  void Submit(const v1::SubmitRequest& request, JobCallback done) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::Job> Get(const std::string& job_id) const;
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request) const;
  void Cancel(const std::string& job_id, JobCallback done) ABSL_LOCKS_EXCLUDED(mu_);
  void Delete(const std::string& job_id, StatusCallback done) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes finished jobs that ended before `before`; done gets how many.
  void Purge(absl::Time before, CountCallback done) ABSL_LOCKS_EXCLUDED(mu_);
  // Retention: removes jobs that ended more than `retention` ago (tombstone "expired") and
  // tombstones older than that again. Synchronous.
  absl::Status Sweep(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  // Runner calls. Acquire blocks until a job of one of `types` is ready (returning it as
  // RUNNING) or the manager stops running jobs (nullopt). The others are fenced by the
  // lease's attempt: a stale lease changes nothing.
  std::optional<Lease> Acquire(const std::vector<std::string>& types) ABSL_LOCKS_EXCLUDED(mu_);
  void ReportStep(const Lease& lease, absl::string_view name, int index, int count,
                  double fraction) ABSL_LOCKS_EXCLUDED(mu_);
  void ReportProgress(const Lease& lease, double fraction, absl::string_view message)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(const Lease& lease, absl::StatusOr<google::protobuf::Value> outcome)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Acquire returns nullopt from now on and running handlers are told to stop; their
  // jobs go back to QUEUED (without spending the attempt) when they Finish.
  void StopRunning() ABSL_LOCKS_EXCLUDED(mu_);
  // Commits and delivers everything queued; later writes fail UNAVAILABLE.
  void Stop();

  storage::GroupCommitter& committer() { return committer_; }
  size_t live_jobs() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct LiveJob {
    v1::Job job;  // working copy without params; may be ahead of the store
    std::shared_ptr<const google::protobuf::Struct> params;
    std::string queue_key;                  // while QUEUED
    std::shared_ptr<RunControl> control;    // while RUNNING
    storage::GroupCommitter::Handle pending_progress;  // replaceable while not yet written
  };

  // Appends the next event of `live` to `batch` and queues it. Once it is committed,
  // `done` (if any) gets the job as that event left it, without params. Call with mu_ held.
  absl::Status Commit(LiveJob& live, v1::JobEvent::Type type, storage::Batch batch,
                      JobCallback done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JobEvent MakeEvent(const v1::Job& job, v1::JobEvent::Type type, absl::Time now) const;
  // Adds the job record and `event` to `batch`; returns the event as watchers get it.
  storage::CommittedEventPtr AddRecordAndEvent(storage::Batch& batch, const v1::Job& job,
                                               v1::JobEvent event) const;
  // Puts a QUEUED in-server job in ready_ or scheduled_; Unqueue takes it out.
  void EnqueueReady(LiveJob& live, int64_t ready_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unqueue(const LiveJob& live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration Backoff(int attempt) const;
  void RemovalBatch(const v1::Job& job, absl::string_view reason, absl::Time now,
                    storage::Batch& batch) const;
  // Removes finished jobs that ended before `ended_before`, leaving tombstones saying
  // `reason`; done gets the count once the last removal is committed.
  void RemoveFinished(absl::Time ended_before, absl::string_view reason, absl::Time now,
                      CountCallback done) ABSL_LOCKS_EXCLUDED(mu_);

  storage::JobStore* const store_;
  watch::EventHub* const hub_;
  const JobTypes* const types_;
  const ManagerOptions options_;
  storage::GroupCommitter committer_;

  mutable absl::Mutex mu_;
  absl::CondVar ready_cv_;
  absl::flat_hash_map<std::string, LiveJob> live_ ABSL_GUARDED_BY(mu_);
  // Queue keys (storage::QueueKey) of QUEUED in-server jobs that may run now, in run
  // order, and of those waiting for their ready time (run_at or retry backoff).
  std::set<std::string> ready_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int64_t, std::string>> scheduled_ ABSL_GUARDED_BY(mu_);
  // Submits with a request_id whose job is not committed yet, and who waits for it.
  absl::flat_hash_map<std::string, std::vector<JobCallback>> requests_in_flight_
      ABSL_GUARDED_BY(mu_);
  bool stop_running_ ABSL_GUARDED_BY(mu_) = false;
};


}  // namespace jobstream::jobs
