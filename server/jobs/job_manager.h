// JobManager: every state transition of every job happens here. A transition updates the
// job's in-memory working copy, assigns the next sequence, and queues one batch (job
// record + event + index changes) on the group committer, all under one lock, so each
// job's events are committed — and then published by the committer — in sequence order.
//
// RUNNING jobs are held in memory, and so is any job while a write of it is on its way to
// the store; a QUEUED job whose writes are all committed lives only in the store, with its
// place in the JobQueue (so a deep queue costs little memory), and is read back when it
// starts or is cancelled. Jobs of in-server types (BUILTIN, EXEC) go to
// runner threads (Acquire), jobs of EXTERNAL types to workers (LeaseJobs), each attempt
// under a lease whose id fences every later call. A dispatcher thread makes scheduled jobs
// ready, expires leases and waits, and times out attempts.
//
//   QUEUED --start--> RUNNING --end--> SUCCEEDED | FAILED | CANCELLED
//      ^                 |
//      +--- RETRYING ----+   (retryable failure with attempts left, lease expiry, timeout,
//                              release by a worker, or server stop)
//   QUEUED --Cancel--> CANCELLED
//   WAITING --its dependencies end (graph.h)--> QUEUED | CANCELLED | FAILED
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.pb.h"
#include "jobstream/v1/workers.pb.h"
#include "server/auth/scope.h"
#include "server/jobs/artifact_upload.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/job_queue.h"
#include "server/jobs/job_types.h"
#include "server/jobs/job_waits.h"
#include "server/jobs/leases.h"
#include "server/jobs/transitions.h"
#include "server/jobs/validation.h"
#include "server/storage/disk_space.h"
#include "server/storage/group_commit.h"
#include "server/storage/job_store.h"
#include "server/storage/records.pb.h"
#include "server/util/task_pool.h"
#include "server/webhooks/webhook_policy.h"
#include "server/webhooks/webhook_sender.h"
#include "server/watch/event_hub.h"

namespace jobstream::jobs {

struct ManagerOptions {
  Limits limits;
  ArtifactLimits artifacts;
  // Which webhook URLs Submit accepts; null or empty: none.
  const webhooks::WebhookPolicy* webhook_policy = nullptr;
  // Finished jobs are removed this long after they end; their tombstones as long again.
  absl::Duration retention = absl::Hours(168);
  // Records ListJobs examines per call before it returns a partial page.
  size_t list_scan_limit = 10000;
  // Whether the disk has room for new work; null: always.
  storage::DiskSpace* disk = nullptr;
};

class JobManager : public JobBackend, public ArtifactSink {
 public:
  // `store`, `hub` and `types` must outlive the manager. Callbacks run on the committer's
  // delivery thread (or inline for errors found before anything is written).
  JobManager(storage::JobStore* store, watch::EventHub* hub, const JobTypes* types,
             ManagerOptions options);
  ~JobManager();

  // JobBackend (job_backend.h says what each does).
  absl::Status Recover() override ABSL_LOCKS_EXCLUDED(mu_);
  using JobBackend::Cancel;
  using JobBackend::Submit;
  void SubmitMade(const v1::SubmitRequest& request, const auth::Scope& scope, MadeJob made,
                  JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void SubmitBatch(const v1::SubmitBatchRequest& request, const auth::Scope& scope,
                   BatchCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::Job> Get(const std::string& job_id, const auth::Scope& scope) const override;
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request,
                                            const auth::Scope& scope) const override;
  void Cancel(const std::string& job_id, const v1::OperatorAction& action,
              const auth::Scope& scope, JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void Retry(const std::string& job_id, const v1::OperatorAction& action,
             const auth::Scope& scope, JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void Delete(const std::string& job_id, const auth::Scope& scope, StatusCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Purge(absl::Time before, CountCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Sweep(absl::Time now) override ABSL_LOCKS_EXCLUDED(mu_);
  v1::ListJobTypesResponse ListTypes(const auth::Scope& scope) const override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::JobTypeInfo> SetTypePause(const std::string& type,
                                               std::optional<v1::TypePause> pause) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<JobWait> WaitJob(const std::string& job_id, const auth::Scope& scope,
                                   absl::Duration timeout, JobCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void AbandonJobWait(const std::shared_ptr<JobWait>& wait) override ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<Attempt> Acquire(const std::vector<std::string>& types) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Report(const Attempt& attempt, const v1::Progress& progress) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(const Attempt& attempt, absl::StatusOr<google::protobuf::Value> outcome) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<LeaseWaiter> LeaseJobs(const v1::LeaseJobRequest& request,
                                         const std::string& default_worker_id,
                                         const auth::Scope& scope, LeaseCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void AbandonWait(const std::shared_ptr<LeaseWaiter>& waiter) override ABSL_LOCKS_EXCLUDED(mu_);
  void ReportWork(const v1::ReportProgressRequest& request, const auth::Scope& scope,
                  ProgressCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void CompleteWork(const v1::CompleteJobRequest& request, const auth::Scope& scope,
                    JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void FailWork(const v1::FailJobRequest& request, const auth::Scope& scope,
                JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseWork(const v1::ReleaseJobRequest& request, const auth::Scope& scope,
                   JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  // EndAttempt gives back the type's and key's slots in memory, before the write.
  bool EndingsFreeAtOnce() const override { return true; }
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginArtifact(
      ArtifactHolder holder, const v1::ArtifactHeader& header) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginWorkerArtifact(
      const v1::ArtifactHeader& header, const auth::Scope& scope) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<StoredArtifact> FindArtifact(const std::string& job_id, const std::string& name,
                                              const auth::Scope& scope) const override;
  absl::Status ReadArtifactChunk(const std::string& job_id, const StoredArtifact& artifact,
                                 uint32_t index, std::string* data) const override {
    return store_->ReadArtifactChunk(job_id, artifact.record.upload_id(), index, data);
  }
  void StopRunning() override ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() override ABSL_LOCKS_EXCLUDED(mu_);

  storage::GroupCommitter& committer() { return committer_; }
  // From now on, events a job's webhook wants are queued for `sender` with their commit.
  // Before serving; the sender must stop before the manager goes.
  void SetWebhookSender(webhooks::WebhookSender* sender) { webhook_sender_ = sender; }
  size_t live_jobs() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct LiveJob {
    v1::Job job;  // working copy without params; may be ahead of the store
    std::shared_ptr<const google::protobuf::Struct> params;  // null until needed
    v1::Job::State indexed_state = v1::Job::STATE_UNSPECIFIED;  // in by_state as written
    std::string queue_key;                // while QUEUED
    storage::LeaseRecord lease;           // while RUNNING
    std::shared_ptr<RunControl> control;  // while RUNNING in this server
    storage::GroupCommitter::Handle pending_progress;  // replaceable while not yet written
    int64_t artifact_bytes_reserved = 0;  // by uploads in progress, against the job's limit
    // Upload ids of artifacts committed while held, newest per name (the store may not
    // have them yet when the next of the same name replaces them).
    absl::flat_hash_map<std::string, uint64_t> artifact_uploads;
  };
  // Replies to run once mu_ is released.
  using Replies = std::vector<std::function<void()>>;

  // Appends the next event of `live` to `batch` and queues it. Once it is committed,
  // `done` (if any) gets the job as that event left it, without params. Call with mu_ held.
  // An ARTIFACT event carries `artifact`.
  absl::Status Commit(LiveJob& live, v1::JobEvent::Type type, storage::Batch batch,
                      JobCallback done, const v1::Artifact* artifact = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The events of one write, in order, what runs once it is committed, and what runs once
  // it is queued (joining the queue, leaving memory: after the write, so nothing overtakes
  // it).
  struct Staged {
    std::vector<storage::CommittedEventPtr> events;
    std::vector<StatusCallback> done;
    std::vector<std::function<void()>> after_enqueue;
  };
  // Commit's first half: the next event of `live` into `batch` and `staged` — and, when a
  // batch's child ends, its parent's events (StageParent). A CHILD event carries `child`.
  void Stage(LiveJob& live, v1::JobEvent::Type type, storage::Batch& batch, Staged& staged,
             JobCallback done, const v1::Artifact* artifact = nullptr,
             const v1::ChildEnded* child = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commit's second half: queues the write, then runs staged.after_enqueue.
  absl::StatusOr<storage::GroupCommitter::Handle> EnqueueStaged(storage::Batch batch,
                                                                Staged staged)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JobEvent MakeEvent(const v1::Job& job, v1::JobEvent::Type type, absl::Time now) const;
  // Adds the job record and `event` to `batch`; returns the event as watchers get it.
  storage::CommittedEventPtr AddRecordAndEvent(storage::Batch& batch, const v1::Job& job,
                                               v1::JobEvent event) const;
  // Holds a job read from the store in memory, as stored.
  LiveJob& Hold(v1::Job job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job in memory, read from the store if it is not (with its params if asked).
  absl::StatusOr<LiveJob*> Load(const std::string& job_id, bool with_params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job of a ready queue key, read in to start; nullptr (the entry dropped) if the job
  // is gone or no longer QUEUED.
  LiveJob* LoadQueued(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The event `sequence` of the job is written: if that is its newest event and the job is
  // QUEUED or WAITING (its place in the queue stays; a batch's parent stays) or ended, it
  // leaves memory.
  void Settle(const std::string& job_id, int64_t sequence) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves the job's index entries (by_state, by_type_state) from `old_state` to its state.
  static void Reindex(const v1::Job& job, v1::Job::State old_state, storage::Batch& batch);
  // Builds the indexes of a store written before they existed.
  absl::Status BackfillIndexes();
  absl::Status LoadPauses() ABSL_LOCKS_EXCLUDED(mu_);
  // Reads what is live from the store into (empty) memory: the queue, jobs leased to
  // workers, and jobs this server was running, whose attempts end as `interrupted_end`
  // (saying `why` they stopped).
  absl::Status LoadLive(AttemptEnd::Kind interrupted_end, absl::string_view why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A failed write. Memory may now be ahead of the store, so nothing more is written:
  // in-server attempts are told to stop, no job starts, and every transition answers
  // UNAVAILABLE, while reads, watches and waits go on. The dispatcher then tries, each
  // second, TryRecoverStore: once every in-server attempt has returned and every write
  // queued before has failed, and the store takes writes again (RocksDB retries by
  // itself once a full disk has room), memory is dropped and read back from the store,
  // as at start; the interrupted attempts run again without counting. Whether it did.
  void MarkStoreFailed(const absl::Status& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TryRecoverStore() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Queue: a QUEUED job gets its key (written with its transition), then — after the
  // transition is queued for commit, so a start can never overtake it — joins the queue.
  // The key follows from the job: its next_attempt_time, else run_at, else create_time.
  static std::string QueueKeyOf(const v1::Job& job);
  void SetQueueKey(LiveJob& live, storage::Batch& batch) const;
  void Enqueue(LiveJob& live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unqueue(LiveJob& live, storage::Batch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A job of `type` may be ready, or a slot of `type` came free: wake who runs it.
  void Wake(absl::string_view type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Admits(absl::string_view type) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The dispatcher wakes no later than `when_ms`.
  void WakeDispatcherBy(int64_t when_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Attempts: RUNNING under a lease (worker_id "server" in this server), and back.
  void StartAttempt(LiveJob& live, absl::Time now, const std::string& worker_id,
                    absl::Duration lease_duration, JobCallback done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EndAttempt(const std::string& job_id, AttemptEnd end, JobCallback done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a progress report to the job: a STEP or PROGRESS event (written with `batch`),
  // or, if nothing changed, just `batch`.
  absl::Status RecordProgress(LiveJob& live, const v1::Progress& progress,
                              storage::Batch batch, StatusCallback done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Workers: the job a lease id holds, if it is still current.
  absl::StatusOr<LiveJob*> FindLease(const std::string& lease_id, const auth::Scope& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the attempt `lease_id` holds the way `end` says (given the job), or answers why
  // the lease is not held.
  void EndLeased(const std::string& lease_id, const auth::Scope& scope,
                 const std::function<AttemptEnd(const LiveJob&)>& end, JobCallback done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Leases up to waiter.max_jobs ready jobs to it; how many. If any, the waiter's done is
  // taken, to answer once their STARTED events are durable.
  int Grant(const std::shared_ptr<LeaseWaiter>& waiter, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ServeWaiters() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Artifacts (artifacts.cc). ArtifactSink: an upload's chunks go to RocksDB without the
  // WAL after a synced marker (MarkUpload) names the upload; its commit flushes them
  // first, or carries a single chunk in its own batch.
  absl::StatusOr<LiveJob*> FindHolder(const ArtifactHolder& holder)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReserveArtifactBytes(const ArtifactHolder& holder, const std::string& name,
                                    int64_t bytes) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteArtifactChunk(const std::string& job_id, uint64_t upload_id, uint32_t index,
                                  std::string data, bool first) override;
  void CommitArtifact(const ArtifactHolder& holder, v1::Artifact artifact,
                      const storage::ArtifactRecord& record, std::string tail, uint32_t tail_index,
                      bool wrote, int64_t reserved, ArtifactSink::Done done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // An upload ended without a commit: gives back its reserved bytes and, if it wrote
  // chunks, removes them and its marker.
  void EndArtifactUpload(const std::string& job_id, uint64_t upload_id, bool marked,
                         int64_t reserved) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status MarkUpload(const std::string& job_id, uint64_t upload_id);
  void CommitArtifactBatch(const ArtifactHolder& holder, v1::Artifact artifact,
                           const storage::ArtifactRecord& record, storage::Batch batch,
                           bool marked, int64_t reserved, ArtifactUpload::Done done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Recovery: removes the chunks of uploads a stop cut off.
  absl::Status RemoveAbandonedUploads();
  // After removing jobs that had artifacts: gives their space back, in the background.
  void CompactRemovedArtifacts(const std::vector<std::string>& job_ids);

  // WaitJob (waits.cc): the waits of a job that just finished (its terminal event is
  // written), answered with the job as stored.
  void AnswerWaits(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  void ExpireWaits(int64_t now_ms, Replies& replies) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Job graphs (dependents.cc; graph.h decides). The dependencies a Submit names, as they
  // stand (NOT_FOUND naming one that does not exist or is beyond `scope`).
  absl::StatusOr<std::vector<v1::Job>> ReadDependencies(const v1::SubmitRequest& request,
                                                        const auth::Scope& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A WAITING job is found by each job in its waiting_for when that one ends; or no longer.
  void Await(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopAwaiting(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `ended`'s terminal event is written: the jobs waiting for it move on.
  void DependencyEnded(const v1::Job& ended) ABSL_LOCKS_EXCLUDED(mu_);
  void MoveDependentsOf(const v1::Job& ended) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MoveDependent(const std::string& job_id, const std::vector<const v1::Job*>& ended)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the WAITING jobs from the store and moves those whose dependencies ended
  // (batches' parents are held in memory).
  absl::Status LoadWaiting() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Batches (batches.cc; batch.h decides). `ended`, a batch's child or `then` job, ended
  // in `batch`: its parent's events join the same write.
  void StageParent(const v1::Job& ended, storage::Batch& batch, Staged& staged)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The parent (WAITING) is cancelled on request, and with it every unfinished child and
  // its `then` job, in one write.
  absl::Status CancelBatch(LiveJob& parent, JobCallback done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A batch as SubmitBatch answers it: the parent as stored and its children's ids.
  absl::StatusOr<v1::SubmitBatchResponse> ReadBatch(const std::string& parent_id) const;

  // Unique keys (uniques.cc; unique.h decides): the job holding `key` (a
  // storage::UniqueKey) at `now`, if one does; answering a Submit with it; and, as a job is
  // removed, its key, unless a newer job took it.
  absl::StatusOr<std::optional<std::string>> UniqueHolder(const std::string& key, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerDeduplicated(const std::string& job_id, JobCallback done) ABSL_LOCKS_EXCLUDED(mu_);
  void ForgetUnique(const v1::Job& job, storage::Batch& batch) const;

  void DispatchLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void Dispatch(absl::Time now, Replies& replies) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
  absl::CondVar ready_cv_;     // runners: an in-server job may be ready
  absl::CondVar dispatch_cv_;  // the dispatcher: something is due sooner
  // Node-based: a write that ends a batch's child may hold (or make) its parent's and
  // `then` job's entries while the caller holds the child's.
  absl::node_hash_map<std::string, LiveJob> live_ ABSL_GUARDED_BY(mu_);
  JobQueue queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> running_ ABSL_GUARDED_BY(mu_);  // by type
  // Paused types (PauseType), kept in the meta column family as "paused/<type>".
  absl::flat_hash_map<std::string, v1::TypePause> paused_ ABSL_GUARDED_BY(mu_);
  DeadlineIndex lease_deadlines_ ABSL_GUARDED_BY(mu_);  // external leases
  DeadlineIndex timeouts_ ABSL_GUARDED_BY(mu_);         // attempts with a timeout
  WorkerRegistry workers_ ABSL_GUARDED_BY(mu_);
  int64_t dispatch_wake_ms_ ABSL_GUARDED_BY(mu_) = 0;
  // Submits with a request_id whose job is not committed yet, and who waits for it.
  absl::flat_hash_map<std::string, std::vector<JobCallback>> requests_in_flight_
      ABSL_GUARDED_BY(mu_);
  JobWaits waits_ ABSL_GUARDED_BY(mu_);
  // Unique keys of jobs whose Submit is not written yet, and the job that took each.
  absl::flat_hash_map<std::string, std::string> uniques_in_flight_ ABSL_GUARDED_BY(mu_);
  // SubmitBatch calls with a request_id whose batch is not committed yet, and who waits.
  absl::flat_hash_map<std::string, std::vector<BatchCallback>> batches_in_flight_
      ABSL_GUARDED_BY(mu_);
  // The WAITING jobs waiting for each live job, by its id.
  absl::flat_hash_map<std::string, std::vector<std::string>> dependents_ ABSL_GUARDED_BY(mu_);
  // Set from a failed write until the store takes writes again and memory is reloaded.
  absl::Status store_failure_ ABSL_GUARDED_BY(mu_);
  absl::Time store_failed_at_ ABSL_GUARDED_BY(mu_);
  absl::Time store_failure_logged_at_ ABSL_GUARDED_BY(mu_);
  int attempts_in_server_ ABSL_GUARDED_BY(mu_) = 0;  // handed to runners, not yet finished
  bool stop_running_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_dispatch_ ABSL_GUARDED_BY(mu_) = false;
  std::thread dispatcher_;
  util::TaskPool compactor_{"js-compact", 1};
  webhooks::WebhookSender* webhook_sender_ = nullptr;
};

}  // namespace jobstream::jobs
