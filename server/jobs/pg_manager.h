// PgJobManager: the JobBackend of a server that shares a PostgreSQL store with others.
// Nothing about a job lives only in one server's memory: every call is a transaction on
// PgStore, so any server answers for any job, and a job's transitions are ordered by its
// row lock rather than by a process. Jobs of in-server types are claimed (FOR UPDATE
// SKIP LOCKED) by whichever server's runner asks first, under a lease held in this
// server's name and renewed while its handler runs; the event feed (PgEventFeed) tells
// Observe when a job may be ready, so runners wake at once.
// Workers' LeaseJob calls wait here, on the server they called; a granter thread claims
// for them when the feed says a job of theirs may be ready, and once a second regardless.
//
// Artifacts' chunks go to a table as they come and are named by the artifact's commit,
// fenced by the attempt's lease like every other change of it.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/job_types.h"
#include "server/jobs/job_waits.h"
#include "server/jobs/leases.h"
#include "server/jobs/transitions.h"
#include "server/jobs/validation.h"
#include "server/storage/pg/leader.h"
#include "server/storage/pg/pg_store.h"
#include "server/util/batch_writer.h"
#include "server/util/task_pool.h"
#include "server/webhooks/webhook_policy.h"

namespace jobstream::jobs {

struct PgManagerOptions {
  Limits limits;
  const webhooks::WebhookPolicy* webhook_policy = nullptr;
  // This server among those sharing the database: the worker_id of its in-server runs.
  std::string server_id;
  // How long an in-server run's lease lasts without renewal: if this server dies, its
  // runs are taken over this long after its last renewal.
  absl::Duration run_lease = absl::Seconds(30);
  // Decides whether this server does the chores of all (the lease sweeper); null: never.
  // Used by the manager's renewal thread only.
  storage::pg::PgLeader* leader = nullptr;
  // Finished jobs are removed this long after they end; their tombstones as long again.
  absl::Duration retention = absl::Hours(168);
  // Records ListJobs examines per call before it returns a partial page.
  size_t list_scan_limit = 10000;
  ArtifactLimits artifacts;
  // Threads that run calls answered by callback (Submit, Cancel, Delete...; workers' reports
  // and ends go to the lease writers), so that gRPC's own threads never wait on PostgreSQL:
  // as many as the store's connections.
  int call_threads = 8;
};

class PgJobManager : public JobBackend, public ArtifactSink {
 public:
  // `store` and `types` must outlive the manager.
  PgJobManager(storage::pg::PgStore* store, const JobTypes* types, PgManagerOptions options);
  ~PgJobManager() override;

  // An event any server committed (from the feed): wakes runners if a job may be ready.
  void Observe(const v1::JobEvent& event) ABSL_LOCKS_EXCLUDED(mu_);

  // JobBackend (job_backend.h says what each does).
  absl::Status Recover() override;
  using JobBackend::Cancel;
  using JobBackend::Submit;
  void SubmitMade(const v1::SubmitRequest& request, const auth::Scope& scope, MadeJob made,
                  JobCallback done) override;
  void SubmitBatch(const v1::SubmitBatchRequest& request, const auth::Scope& scope,
                   BatchCallback done) override;
  absl::StatusOr<v1::Job> Get(const std::string& job_id, const auth::Scope& scope) const override;
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request,
                                            const auth::Scope& scope) const override;
  void Cancel(const std::string& job_id, const v1::OperatorAction& action,
              const auth::Scope& scope, JobCallback done) override ABSL_LOCKS_EXCLUDED(mu_);
  void Retry(const std::string& job_id, const v1::OperatorAction& action,
             const auth::Scope& scope, JobCallback done) override;
  // A bulk retry's or cancel's page in one transaction (one commit, not one per job); a
  // delete as JobBackend's.
  std::vector<absl::Status> ChangeMany(BulkOp op, const std::vector<std::string>& ids,
                                       const v1::OperatorAction& action,
                                       const auth::Scope& scope) override;
  void Delete(const std::string& job_id, const auth::Scope& scope, StatusCallback done) override;
  void Purge(absl::Time before, CountCallback done) override;
  absl::Status Sweep(absl::Time now) override;
  v1::ListJobTypesResponse ListTypes(const auth::Scope& scope) const override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::JobTypeInfo> SetTypePause(const std::string& type,
                                               std::optional<v1::TypePause> pause) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<JobWait> WaitJob(const std::string& job_id, const auth::Scope& scope,
                                   absl::Duration timeout, JobCallback done) override;
  void AbandonJobWait(const std::shared_ptr<JobWait>& wait) override;
  std::optional<Attempt> Acquire(const std::vector<std::string>& types) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Report(const Attempt& attempt, const v1::Progress& progress) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(const Attempt& attempt, absl::StatusOr<google::protobuf::Value> outcome) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<LeaseWaiter> LeaseJobs(const v1::LeaseJobRequest& request,
                                         const std::string& default_worker_id,
                                         const auth::Scope& scope, LeaseCallback done) override;
  void AbandonWait(const std::shared_ptr<LeaseWaiter>& waiter) override;
  void ReportWork(const v1::ReportProgressRequest& request, const auth::Scope& scope,
                  ProgressCallback done) override;
  void CompleteWork(const v1::CompleteJobRequest& request, const auth::Scope& scope,
                    JobCallback done) override;
  void FailWork(const v1::FailJobRequest& request, const auth::Scope& scope,
                JobCallback done) override;
  void ReleaseWork(const v1::ReleaseJobRequest& request, const auth::Scope& scope,
                   JobCallback done) override;
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginArtifact(
      ArtifactHolder holder, const v1::ArtifactHeader& header) override;
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginWorkerArtifact(
      const v1::ArtifactHeader& header, const auth::Scope& scope) override;
  absl::StatusOr<StoredArtifact> FindArtifact(const std::string& job_id, const std::string& name,
                                              const auth::Scope& scope) const override;
  absl::Status ReadArtifactChunk(const std::string& job_id, const StoredArtifact& artifact,
                                 uint32_t index, std::string* data) const override;
  void StopRunning() override ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() override ABSL_LOCKS_EXCLUDED(mu_);

  // ArtifactSink (artifact_upload.h).
  absl::Status ReserveArtifactBytes(const ArtifactHolder& holder, const std::string& name,
                                    int64_t bytes) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteArtifactChunk(const std::string& job_id, uint64_t upload_id, uint32_t index,
                                  std::string data, bool first) override;
  void CommitArtifact(const ArtifactHolder& holder, v1::Artifact artifact,
                      const storage::ArtifactRecord& record, std::string tail, uint32_t tail_index,
                      bool wrote, int64_t reserved, ArtifactSink::Done done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void EndArtifactUpload(const std::string& job_id, uint64_t upload_id, bool wrote,
                         int64_t reserved) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // An in-server run of this server.
  struct Run {
    std::string lease_id;
    std::string type;
    std::shared_ptr<RunControl> control;
    int64_t attempt_deadline_ms = 0;  // 0: no timeout
    // The progress as it stands once the queued reports are written; those reports (each
    // the whole progress, and the event it makes), oldest first.
    v1::Progress progress;
    struct Report {
      v1::Progress progress;
      v1::JobEvent::Type type;
    };
    std::deque<Report> reports;
    // Whether the handler returned; how it ended, until a writer takes that to write it
    // after the reports.
    bool finished = false;
    struct End {
      absl::StatusOr<google::protobuf::Value> outcome;
      bool timed_out = false;
      bool server_stopping = false;
    };
    std::optional<End> end;
    bool listed = false;  // in unwritten_, or being written
  };
  // Ends this server's account of a run: its slot is free.
  void ForgetRun(absl::flat_hash_map<std::string, Run>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lists a run that has something to write, unless it is listed already.
  void Unwritten(const std::string& job_id, Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A run writer: takes up to kMaxRunBatch listed runs and writes what each queued, in one
  // transaction for all (PostgreSQL pays a commit's fsync and NOTIFY's commit lock once),
  // while the next batch gathers; until stopped with nothing left.
  static constexpr size_t kMaxRunBatch = 128;
  void WriteRuns() ABSL_LOCKS_EXCLUDED(mu_);
  // Submits without request_id are written in batches, a transaction each, by a few
  // writers: while one batch commits the next gathers (RocksDB's group commit, here).
  struct PendingInsert {
    storage::pg::PgStore::NewJob row;
    std::string tenant;
    JobCallback done;
  };
  void Enqueue(PendingInsert insert);
  void WriteInserts(std::vector<PendingInsert>& batch) ABSL_LOCKS_EXCLUDED(mu_);
  // What the callback calls do, on a call thread.
  void SubmitNow(const v1::SubmitRequest& request, const auth::Scope& scope, const MadeJob& made,
                 JobCallback done);
  void RetryNow(const std::string& job_id, v1::OperatorAction action, const auth::Scope& scope,
                JobCallback done);
  // What a cancel does to a locked job (CancelNow's and a bulk cancel's; a batch's parent
  // is ALREADY_EXISTS: CancelBatch's), and a local run of a job asked to stop.
  storage::pg::PgStore::Change CancelChange(const v1::OperatorAction& action,
                                            const auth::Scope& scope, absl::Time now,
                                            v1::Job* changed) const;
  void StopRun(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  // What a retry does to a locked job (RetryNow's and a bulk retry's): `changed`, if
  // given, gets the job as changed.
  storage::pg::PgStore::Change RetryChange(v1::OperatorAction action, const auth::Scope& scope,
                                           absl::Time now, v1::Job* changed) const;
  // Unique keys (unique.h decides): whether a job still holds its key; a Submit's answer
  // when one does.
  static storage::pg::PgStore::Holds UniqueHolds(absl::Time now);
  absl::StatusOr<v1::Job> Deduplicated(const std::string& job_id) const;
  // Job graphs (pg_dependents.cc): a Submit with depends_on; the jobs waiting for jobs
  // that ended move on; and those a move cut short by a crash left waiting, found.
  void SubmitWaiting(const v1::SubmitRequest& request, const auth::Scope& scope, v1::Job job,
                     absl::Time now, JobCallback done);
  void MoveDependents(std::vector<std::string>& ended);
  void SweepDependencies();
  // Batches (pg_batches.cc; batch.h decides): a SubmitBatch; a batch as SubmitBatch
  // answers it; the parents of jobs that ended move on (the leader, as the feed shows the
  // ends, and each second for any a crash left); a parent cancelled with its children.
  void SubmitBatchNow(const v1::SubmitBatchRequest& request, const auth::Scope& scope,
                      BatchCallback done);
  absl::StatusOr<v1::SubmitBatchResponse> ReadBatch(const std::string& parent_id) const;
  void CountChildren(std::vector<std::string>& ended);
  void SweepChildren();
  absl::StatusOr<v1::Job> CancelBatch(const std::string& parent_id, absl::Time now);
  void CancelNow(const std::string& job_id, const v1::OperatorAction& action,
                 const auth::Scope& scope, JobCallback done) ABSL_LOCKS_EXCLUDED(mu_);
  // The lease an artifact's holder attaches under: a worker's, or this server's run's
  // (FAILED_PRECONDITION once that run ended).
  absl::StatusOr<std::string> HolderLease(const ArtifactHolder& holder) ABSL_LOCKS_EXCLUDED(mu_);
  // The job as it stands, if the holder's lease still holds it (one query).
  absl::StatusOr<v1::Job> HeldBy(const ArtifactHolder& holder) ABSL_LOCKS_EXCLUDED(mu_);
  bool Admits(const std::string& type) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Renews the leases of this server's runs and times out those past their deadline;
  // and, if it leads, sweeps expired leases.
  void RenewLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Answers the waits of a job that finished, or whose deadline came.
  void AnswerWaits(const JobWaits::Waits& waits) const;
  // Ends the attempts whose leases expired — of workers that went quiet, and of servers
  // that died mid-run — as failed and retryable, and those past their timeout.
  void SweepLeases(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the attempt `lease_id` holds on `job_id` as `end` says, given the job as stored
  // (its error changes nothing); the events, logged. FAILED_PRECONDITION if the lease no
  // longer holds the job.
  absl::StatusOr<std::vector<v1::JobEvent>> EndLease(
      const std::string& job_id, const std::string& lease_id,
      const std::function<absl::StatusOr<AttemptEnd>(const v1::Job&)>& end);
  // Who holds a claimed job's attempt: its worker_id, and its lease's duration (zero: the
  // type's).
  struct Holder {
    const std::string& worker_id;
    absl::Duration lease_duration;
  };
  // Claims up to `limit` ready jobs of `types` (only `tenant`'s, if given), the k-th it
  // takes as an attempt of holder(k); logged.
  absl::StatusOr<std::vector<storage::pg::PgStore::Claimed>> Claim(
      const std::vector<std::string>& types, int limit, std::optional<std::string> tenant,
      const std::function<Holder(size_t)>& holder);
  // Claims jobs for LeaseJob calls, one claim for the calls that ask for the same jobs, and
  // answers each call that got some (or the claim's error); the calls left unanswered.
  WaiterList Grant(const WaiterList& calls) ABSL_LOCKS_EXCLUDED(mu_);
  // Answers LeaseJob calls: tries each new one at once, and the waiting ones when a job of
  // theirs may be ready; with jobs as they become ready, empty at their deadline.
  void GrantLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the attempt `lease_id` holds as `end` says (given the job); done gets the job.
  void EndLeased(const std::string& lease_id, const auth::Scope& scope,
                 std::function<AttemptEnd(const v1::Job&)> end, JobCallback done);
  // Workers' reports and ends, each answered by `done` with its change as written, are
  // written many to a transaction by the lease writers.
  struct PendingLeased {
    storage::pg::PgStore::LeasedChange change;
    std::function<void(storage::pg::PgStore::LeasedChange&)> done;
  };
  void QueueLeased(PendingLeased pending);
  void WriteLeased(std::vector<PendingLeased>& batch);
  // Writes `changes` in one transaction (ChangeLeasedBatch), and logs what it wrote. If
  // PostgreSQL refused it (not gone), each group — changes[firsts[i]] up to
  // changes[firsts[i + 1]] — is written in a transaction of its own, so a refused one fails
  // alone. Each change's result then says how it went.
  void WriteChanges(std::vector<storage::pg::PgStore::LeasedChange>& changes,
                    const std::vector<size_t>& firsts);
  // QUEUED jobs of `tenant` as counted at most a second ago, plus this server's Submits
  // since; counted afresh once at the cap. The cap (Limits::max_queued_per_tenant) is thus
  // exact for one server, and for several within a second's Submits of the others.
  absl::StatusOr<int64_t> QueuedOf(const std::string& tenant) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes finished jobs that ended before `before`, in rounds, leaving tombstones dated
  // `now`; how many.
  absl::StatusOr<int64_t> RemoveFinished(absl::Time before, absl::string_view reason,
                                         absl::Time now);

  storage::pg::PgStore* const store_;
  const JobTypes* const types_;
  const PgManagerOptions options_;

  mutable absl::Mutex mu_;
  absl::CondVar ready_cv_;  // runners: a job may be ready, or stopping
  absl::CondVar unwritten_cv_;  // run writers: a run has something to write, or stopping
  absl::CondVar run_written_;   // an artifact's commit: a batch of runs' writes is done
  absl::flat_hash_map<std::string, Run> runs_ ABSL_GUARDED_BY(mu_);  // by job id
  absl::flat_hash_map<std::string, int> running_ ABSL_GUARDED_BY(mu_);  // by type
  // Runners in Acquire; whether one of them is claiming for all; the attempts it claimed
  // that no runner took yet; and how many times the feed said a job may be ready.
  int acquiring_ ABSL_GUARDED_BY(mu_) = 0;
  bool claiming_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Attempt> handed_ ABSL_GUARDED_BY(mu_);
  uint64_t ready_hints_ ABSL_GUARDED_BY(mu_) = 0;
  JobWaits waits_ ABSL_GUARDED_BY(mu_);
  bool stop_running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Runs with reports or an end to write, in the order they came; the writers that write
  // them, and whether they are to stop once none is left.
  std::deque<std::string> unwritten_ ABSL_GUARDED_BY(mu_);
  bool writes_stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> run_writers_;
  bool renewer_wake_ ABSL_GUARDED_BY(mu_) = false;  // a wait with a deadline came
  // Per-type caps on RUNNING jobs, enforced across servers by the claim.
  std::map<std::string, int> caps_;
  const absl::flat_hash_map<std::string, KeyLimit> key_limits_;  // of the types that have any
  // LeaseJob calls waiting; those being granted outside the lock, and of them the ones
  // whose caller went away meanwhile.
  WorkerRegistry workers_ ABSL_GUARDED_BY(mu_);
  WaiterList fresh_ ABSL_GUARDED_BY(mu_);  // LeaseJob calls the granter has not tried yet
  absl::flat_hash_set<LeaseWaiter*> granting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<LeaseWaiter*> abandoned_ ABSL_GUARDED_BY(mu_);
  // EXTERNAL types that may have a job ready since the granter last looked.
  absl::flat_hash_set<std::string> hinted_ ABSL_GUARDED_BY(mu_);
  bool granter_wake_ ABSL_GUARDED_BY(mu_) = false;
  struct QueuedCount {
    int64_t count = 0;
    absl::Time read_at;
  };
  absl::flat_hash_map<std::string, QueuedCount> queued_ ABSL_GUARDED_BY(mu_);  // by tenant
  // Bytes of this server's uploads in progress, by job, against the job's limit.
  absl::flat_hash_map<std::string, int64_t> artifact_reserved_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> leading_{false};  // this server did the chores at its last renewal
  std::thread renewer_;
  std::thread granter_;
  std::unique_ptr<util::BatchWriter<PendingInsert>> inserts_;
  std::unique_ptr<util::BatchWriter<PendingLeased>> leased_;
  // Jobs that ended, seen by the leader: the jobs waiting for them move on.
  std::unique_ptr<util::BatchWriter<std::string>> ended_;
  std::unique_ptr<util::BatchWriter<std::string>> children_ended_;  // of batches
  // Last: destroyed first, running what is queued while everything it uses is still there.
  std::unique_ptr<util::TaskPool> calls_;
};

}  // namespace jobstream::jobs
