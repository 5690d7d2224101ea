// JobBackend: every call the services and runners make on jobs, answered by a manager
// over a store. JobManager is the RocksDB one (the embedded default).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobstream/v1/jobs.pb.h"
#include "jobstream/v1/workers.pb.h"
#include "server/auth/scope.h"
#include "server/jobs/artifact_upload.h"
#include "server/jobs/leases.h"
#include "server/storage/records.pb.h"

namespace jobstream::jobs {

// Shared by the manager and the runner thread of one in-server attempt.
struct RunControl {
  absl::Notification stop;  // notified on cancel request, timeout or server stop
  std::atomic<bool> server_stopping{false};
  std::atomic<bool> timed_out{false};
};

// One attempt of an in-server job, handed to a runner thread.
struct Attempt {
  std::string job_id;
  std::string type;
  int attempt = 0;
  std::shared_ptr<const google::protobuf::Struct> params;
  std::shared_ptr<RunControl> control;
  std::string traceparent;  // this attempt's span, for what the handler runs
};

// A committed artifact as GetArtifact reads it.
struct StoredArtifact {
  v1::Artifact artifact;
  storage::ArtifactRecord record;
};

// One WaitJob call waiting for its job to finish.
struct JobWait {
  std::string key;  // its key in the manager's JobWaits
  std::string job_id;
  std::function<void(absl::StatusOr<v1::Job>)> done;
};

enum class BulkOp { kCancel, kRetry, kDelete };

class JobBackend {
 public:
  using JobCallback = std::function<void(absl::StatusOr<v1::Job>)>;
  using StatusCallback = std::function<void(absl::Status)>;
  using CountCallback = std::function<void(absl::StatusOr<int64_t>)>;
  using ProgressCallback = std::function<void(absl::StatusOr<v1::ReportProgressResponse>)>;
  using BatchCallback = std::function<void(absl::StatusOr<v1::SubmitBatchResponse>)>;

  virtual ~JobBackend() = default;

  // Before serving: loads what is live. Jobs that were running in this server when it
  // stopped are retried (RETRYING event) or, with no attempts left, FAILED — each with an
  // event saying why. Jobs leased to workers keep their leases and deadlines.
  virtual absl::Status Recover() = 0;

  // Client calls. done receives the job as committed, or the error.
  // `scope` is the caller's (auth/scope.h): a job submitted belongs to its tenant, and a
  // job beyond it is NOT_FOUND, as if it never existed.
  void Submit(const v1::SubmitRequest& request, const auth::Scope& scope, JobCallback done) {
    SubmitMade(request, scope, nullptr, std::move(done));
  }
  // Submit, with `made` applied to the new job before it is written (a replay's link and
  // action).
  using MadeJob = std::function<void(v1::Job& job)>;
  virtual void SubmitMade(const v1::SubmitRequest& request, const auth::Scope& scope,
                          MadeJob made, JobCallback done) = 0;
  // A batch (batch.h): its parent and children, all in one write, or none.
  virtual void SubmitBatch(const v1::SubmitBatchRequest& request, const auth::Scope& scope,
                           BatchCallback done) = 0;
  virtual absl::StatusOr<v1::Job> Get(const std::string& job_id,
                                      const auth::Scope& scope) const = 0;
  virtual absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request,
                                                    const auth::Scope& scope) const = 0;
  void Cancel(const std::string& job_id, const auth::Scope& scope, JobCallback done) {
    Cancel(job_id, v1::OperatorAction(), scope, std::move(done));
  }
  // CancelJob with who asked and why (`action`, its sequence left to the store).
  virtual void Cancel(const std::string& job_id, const v1::OperatorAction& action,
                      const auth::Scope& scope, JobCallback done) = 0;
  // RetryJob (jobs.proto): the job QUEUED again, its RETRIED event carrying `action`.
  virtual void Retry(const std::string& job_id, const v1::OperatorAction& action,
                     const auth::Scope& scope, JobCallback done) = 0;
  // RetryJob as_new: a new job like `job_id` (ReplayRequest) in its tenant, replay_of
  // naming it, its CREATED event carrying `action`.
  void Replay(const std::string& job_id, const google::protobuf::Struct* params,
              v1::OperatorAction action, const auth::Scope& scope, JobCallback done);
  virtual void Delete(const std::string& job_id, const auth::Scope& scope, StatusCallback done) = 0;
  // BulkCancel, BulkRetry, BulkDelete (jobs.proto; bulk.cc), `by` the caller's name. Runs
  // on the caller's thread until every page is done: a long call.
  absl::StatusOr<v1::BulkResponse> Bulk(BulkOp op, const v1::BulkRequest& request,
                                        const std::string& by, const auth::Scope& scope);
  // From now on a bulk call stops before its next page (UNAVAILABLE, saying how far it
  // got): shutdown waits only a few seconds for calls under way.
  void StopBulk() { bulk_stopping_.store(true); }
  // Bulk's work on one page: `op` on each of `ids`, answering each one's status in order.
  // By default each job's own call, all in flight at once (RocksDB's group commit writes
  // them together); a store may write a page in one transaction instead.
  virtual std::vector<absl::Status> ChangeMany(BulkOp op, const std::vector<std::string>& ids,
                                               const v1::OperatorAction& action,
                                               const auth::Scope& scope);
  // Removes finished jobs that ended before `before`; done gets how many.
  virtual void Purge(absl::Time before, CountCallback done) = 0;
  // Retention: removes jobs that ended more than `retention` ago (tombstone "expired") and
  // tombstones older than that again. Synchronous.
  virtual absl::Status Sweep(absl::Time now) = 0;
  virtual v1::ListJobTypesResponse ListTypes(const auth::Scope& scope) const = 0;
  // Pauses (`pause` set) or resumes the declared `type`, durably and for every server on
  // the store; answers the type as ListTypes shows it. `type` is checked here.
  virtual absl::StatusOr<v1::JobTypeInfo> SetTypePause(const std::string& type,
                                                       std::optional<v1::TypePause> pause) = 0;
  // One declared type as ListTypes shows it (every tenant's counts); NOT_FOUND if it is
  // not declared.
  absl::StatusOr<v1::JobTypeInfo> TypeInfo(const std::string& type) const {
    v1::ListJobTypesResponse listed = ListTypes(auth::Scope::Everything());
    for (v1::JobTypeInfo& info : *listed.mutable_types()) {
      if (info.name() == type) return std::move(info);
    }
    return absl::NotFoundError("no job type \"" + type + "\"");
  }
  // Long-poll: done gets the job (as GetStatus returns it) once it is finished — at once
  // if it is — or as it stands when `timeout` passes. The returned wait (null if done was
  // already called) can be abandoned, which answers CANCELLED.
  virtual std::shared_ptr<JobWait> WaitJob(const std::string& job_id, const auth::Scope& scope,
                                           absl::Duration timeout, JobCallback done) = 0;
  virtual void AbandonJobWait(const std::shared_ptr<JobWait>& wait) = 0;

  // Runner calls (in-server types). Acquire blocks until a job of one of `types` may run
  // (returning it as RUNNING) or the manager stops running jobs (nullopt). The others are
  // fenced by the attempt: a stale one changes nothing.
  virtual std::optional<Attempt> Acquire(const std::vector<std::string>& types) = 0;
  virtual void Report(const Attempt& attempt, const v1::Progress& progress) = 0;
  virtual void Finish(const Attempt& attempt, absl::StatusOr<google::protobuf::Value> outcome) = 0;

  // Worker calls (EXTERNAL types; see WorkerService). LeaseJobs answers once jobs are
  // leased (after their STARTED events commit) or the wait ends; while it waits, the
  // returned waiter can be abandoned (the caller went away), which answers CANCELLED.
  // A worker whose scope is one tenant leases only that tenant's jobs, and a lease of
  // another tenant's job is not held for it.
  virtual std::shared_ptr<LeaseWaiter> LeaseJobs(const v1::LeaseJobRequest& request,
                                                 const std::string& default_worker_id,
                                                 const auth::Scope& scope, LeaseCallback done) = 0;
  virtual void AbandonWait(const std::shared_ptr<LeaseWaiter>& waiter) = 0;
  virtual void ReportWork(const v1::ReportProgressRequest& request, const auth::Scope& scope,
                          ProgressCallback done) = 0;
  virtual void CompleteWork(const v1::CompleteJobRequest& request, const auth::Scope& scope,
                            JobCallback done) = 0;
  virtual void FailWork(const v1::FailJobRequest& request, const auth::Scope& scope,
                        JobCallback done) = 0;
  virtual void ReleaseWork(const v1::ReleaseJobRequest& request, const auth::Scope& scope,
                           JobCallback done) = 0;
  // Whether a worker call's ending frees what it held (its type's and key's slots) the
  // moment the call returns, before it is written: then a lease that follows it at once
  // sees the freed slots, and its STARTED can share the ending's synced write.
  virtual bool EndingsFreeAtOnce() const { return false; }

  // Artifacts (see ArtifactUpload). BeginArtifact checks the header and that `holder`
  // still holds a RUNNING job; BeginWorkerArtifact takes the holder from the lease id.
  virtual absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginArtifact(
      ArtifactHolder holder, const v1::ArtifactHeader& header) = 0;
  virtual absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginWorkerArtifact(
      const v1::ArtifactHeader& header, const auth::Scope& scope) = 0;
  // A committed artifact; NOT_FOUND names the job's artifacts.
  virtual absl::StatusOr<StoredArtifact> FindArtifact(const std::string& job_id,
                                                      const std::string& name,
                                                      const auth::Scope& scope) const = 0;
  // Chunk `index` of it; NotFound once it has been replaced or removed.
  virtual absl::Status ReadArtifactChunk(const std::string& job_id, const StoredArtifact& artifact,
                                         uint32_t index, std::string* data) const = 0;

  // Acquire returns nullopt and LeaseJobs UNAVAILABLE from now on; running handlers are
  // told to stop (their jobs go back to QUEUED, without spending the attempt, when they
  // Finish). Leases held by workers stay: they keep their deadlines across a restart.
  virtual void StopRunning() = 0;
  // Writes and delivers everything under way; later writes fail UNAVAILABLE.
  virtual void Stop() = 0;

 private:
  std::atomic<bool> bulk_stopping_{false};
};

}  // namespace jobstream::jobs
