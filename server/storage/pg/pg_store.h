// PgStore: jobs and their events in PostgreSQL, with the guarantees the RocksDB store
// gives, held by the database rather than by one process, so several servers can share it:
//  - durable before acknowledged: every call commits (synchronous_commit) before it answers;
//  - dense per-job sequences: a transition locks the job's row, which hands out the next
//    sequence, and writes the job and its events in the same transaction;
//  - idempotent request_id: the (tenant, request_id) key admits one job, and a twin gets it;
//  - exclusive claims: queued jobs are claimed FOR UPDATE SKIP LOCKED, so two servers or
//    workers never start the same job.
// Each transaction that commits events announces them with NOTIFY on kEventsChannel
// ("job_id first_sequence last_sequence"); a listener reads those events by sequence.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/storage/event_reader.h"
#include "server/storage/key_limits.h"
#include "server/storage/pg/connection.h"
#include "server/storage/records.pb.h"

namespace jobstream::storage::pg {

inline constexpr char kEventsChannel[] = "jobstream_events";

// Connections to one PostgreSQL, one per transaction at a time, at most `size`; a broken
// one is dropped and the next call connects again.
class PgPool {
 public:
  PgPool(std::string url, int size) : url_(std::move(url)), size_(size) {}

  // Runs `body` between BEGIN and COMMIT on a pooled connection (ROLLBACK if it fails).
  // A transaction that lost a serialization race or a deadlock (ABORTED) runs again, up
  // to 5 times. UNAVAILABLE when PostgreSQL cannot be reached — including a COMMIT whose
  // answer was lost, whose outcome is then unknown (nothing was acknowledged).
  absl::Status Transact(const std::function<absl::Status(PgConnection&)>& body);
  // Runs `body` on a pooled connection outside a transaction (each statement commits by
  // itself): single reads, and what runs its own transaction.
  absl::Status Use(const std::function<absl::Status(PgConnection&)>& body);

 private:
  absl::StatusOr<std::unique_ptr<PgConnection>> Take();
  void Give(std::unique_ptr<PgConnection> conn);

  const std::string url_;
  const int size_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<PgConnection>> idle_;
  int open_ = 0;  // connections made and not dropped, idle or in use
};

class PgStore : public EventReader {
 public:
  // Connects (checking the URL first) and brings the schema up to date.
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(const std::string& url, int pool_size);
  // Its connections, for what keeps tables of its own beside the jobs (schedules).
  PgPool* pool() const { return &pool_; }

  // A new job with its CREATED event (sequence 1; the store fills in sequence and
  // status). With a request_id, a twin — an earlier job of the same tenant and
  // request_id — is returned instead, and nothing is written; `created` says which.
  // With a unique_key, the job that took that key last (of the same tenant) is handed to
  // `holds`: if it still holds the key, it is returned instead (`deduplicated`) and
  // nothing is written; otherwise this job takes the key.
  struct Inserted {
    v1::Job job;  // without params
    bool created = false;
    bool deduplicated = false;
  };
  using Holds = std::function<bool(const v1::Job& holder)>;
  absl::StatusOr<Inserted> InsertJob(const v1::Job& job, const google::protobuf::Struct& params,
                                     v1::JobEvent created, const Holds& holds = nullptr);

  // A new job with depends_on, in one transaction: its dependencies' rows are locked
  // (FOR SHARE, so none ends meanwhile) and handed to `wait`, which gives the job's events
  // — CREATED, and what follows it (graph.h) — each with the job as of that event, or
  // refuses (that error is returned; nothing is written). The store numbers them and
  // writes the job as of the last, and, if it is WAITING, a job_dependencies row for each
  // job in its waiting_for. request_id and unique_key as InsertJob.
  using Wait = std::function<absl::StatusOr<std::vector<v1::JobEvent>>(
      const std::vector<v1::Job>& dependencies)>;
  absl::StatusOr<Inserted> InsertWaitingJob(const v1::Job& job,
                                            const google::protobuf::Struct& params,
                                            const Wait& wait, const Holds& holds = nullptr);
  // The jobs `ended` have ended: in one transaction, each WAITING job waiting for some of
  // them (job_dependencies) is locked, in id order, and handed to `move` with those
  // (their records as they ended; one since removed, as CANCELLED), which changes it
  // (graph.h) and adds its event, if any; the rows of job_dependencies that no longer
  // hold go. Idempotent: a job that moved on already is not waiting for them. The events
  // written.
  using Move = std::function<void(v1::Job& job, const std::vector<const v1::Job*>& ended,
                                  std::vector<v1::JobEvent>& events)>;
  absl::StatusOr<std::vector<v1::JobEvent>> MoveDependents(const std::vector<std::string>& ended,
                                                           const Move& move);
  // Up to `limit` jobs that ended (or were removed) with jobs still in job_dependencies
  // waiting for them: what a MoveDependents cut short by a crash left.
  absl::StatusOr<std::vector<std::string>> EndedDependencies(int limit) const;

  // Many new jobs without request_id, each with its CREATED event, in one statement (one
  // round trip, one commit: its fsync and NOTIFY's lock are paid once for all). On
  // success `jobs` hold the jobs as stored (numbered, without params).
  struct NewJob {
    v1::Job job;
    google::protobuf::Struct params;
    v1::JobEvent created;
  };
  absl::Status InsertJobs(std::vector<NewJob>& jobs);

  // A change to one job: `change` gets the job as stored (row locked) and adds the events
  // the change makes (their type and payload; the store numbers them and sets each one's
  // status to the job as changed). Its error aborts the change. NOT_FOUND for no such job.
  using Change = std::function<absl::Status(v1::Job& job, std::vector<v1::JobEvent>& events)>;
  absl::StatusOr<std::vector<v1::JobEvent>> Transition(const std::string& job_id,
                                                       const Change& change);

  // Changes to several jobs in one transaction (their rows locked in id order): one
  // commit for them all. Each `change` is Transition's; one that fails (or finds no such
  // job: NOT_FOUND) gets its status in `result` and writes nothing, the others go on. The
  // status returned is the transaction's: if it is not OK, nothing was written.
  struct BatchChange {
    std::string job_id;
    Change change;
    absl::StatusOr<std::vector<v1::JobEvent>> result = std::vector<v1::JobEvent>();
  };
  absl::Status TransitionBatch(std::vector<BatchChange>& changes);

  // Batches (jobs/batch.h; pg_batches.cc). A batch in one transaction: the parent with
  // `parent_events` (each with the parent as of itself), a batches row naming the
  // children, and each child with its CREATED event and a batch_children row. With a
  // request_id (the parent's, kept apart from Submit's), a twin's parent is returned
  // instead and nothing is written.
  absl::StatusOr<Inserted> InsertBatch(const v1::Job& parent,
                                       const google::protobuf::Struct& parent_params,
                                       std::vector<v1::JobEvent> parent_events,
                                       std::vector<NewJob>& children);
  // The children a batch was made with, in order; NOT_FOUND if it is no batch.
  absl::StatusOr<std::vector<std::string>> BatchChildren(const std::string& parent_id) const;
  // What a parent's move gives: its events (each with the parent as of itself) and a
  // `then` job to make (it gets a batch_children row).
  struct ParentMove {
    std::vector<v1::JobEvent> events;
    std::optional<NewJob> then;
  };
  using MoveParent = std::function<absl::StatusOr<ParentMove>(
      const v1::Job& parent, const google::protobuf::Struct& params,
      const std::vector<const v1::Job*>& ended)>;
  // Jobs of batches that ended: in one transaction the parent of each still in
  // batch_children is locked (in id order) and handed to `move` with its params and those
  // of them that ended (as they ended); their rows go. Idempotent. The events written.
  absl::StatusOr<std::vector<v1::JobEvent>> CountChildren(const std::vector<std::string>& ended,
                                                          const MoveParent& move);
  // Up to `limit` jobs that ended before `ended_before` whose parents have not counted
  // them.
  absl::StatusOr<std::vector<std::string>> EndedChildren(int limit, absl::Time ended_before) const;
  // A batch's parent cancelled, in one transaction: the parent is locked, then those of its
  // jobs still in batch_children and live (in id order); `child` changes each (its events
  // added as Transition's are), then `move` gets the parent with those that ended so (their
  // rows go). The events written: the children's, then the parent's. NOT_FOUND: no such
  // job.
  absl::StatusOr<std::vector<v1::JobEvent>> CancelBatch(const std::string& parent_id,
                                                        const Change& child,
                                                        const MoveParent& move);


  // Attempts run under leases. ClaimLeased claims up to `limit` QUEUED jobs of `types`
  // ready at `now_ms` (best priority; within it the tenants in turn, those with fewest
  // of these types running first; within a tenant earliest ready), skipping rows another
  // transaction holds, and applies `start` to each (which moves it out of QUEUED and
  // returns its lease); the lease row (job_id, lease_id, deadline) is written with the
  // STARTED event. Every later call of the attempt names its lease_id, which fences it: a
  // lease that was ended, expired or taken over is FAILED_PRECONDITION, and changes nothing.
  // `index` is the job's place among those this claim took (0, 1, ...).
  using Start = std::function<absl::StatusOr<LeaseRecord>(
      v1::Job& job, std::vector<v1::JobEvent>& events, size_t index)>;
  struct Claimed {
    std::vector<v1::JobEvent> events;
    LeaseRecord lease;
    google::protobuf::Struct params;  // the job's, for whoever runs it
  };
  struct ClaimOptions {
    std::optional<std::string> tenant;  // only this tenant's jobs
    // Caps on RUNNING jobs by type (none if null), over every server and worker: a claim
    // of a capped type takes the type's advisory lock for its transaction, so two claims
    // cannot both fill the last slot.
    const std::map<std::string, int>* max_running = nullptr;
    // Limits per (tenant, concurrency key) by type (none if null). A claim of such a type
    // takes the type's advisory lock too, and spends from its keys' buckets.
    const absl::flat_hash_map<std::string, KeyLimit>* key_limits = nullptr;
  };
  absl::StatusOr<std::vector<Claimed>> ClaimLeased(const std::vector<std::string>& types,
                                                   int64_t now_ms, int limit, const Start& start,
                                                   const ClaimOptions& options);
  absl::StatusOr<std::vector<Claimed>> ClaimLeased(const std::vector<std::string>& types,
                                                   int64_t now_ms, int limit, const Start& start);
  // A change to the job `lease_id` holds, keeping the lease (progress) or ending it.
  absl::StatusOr<std::vector<v1::JobEvent>> ChangeLeased(const std::string& job_id,
                                                         const std::string& lease_id,
                                                         bool end_lease, const Change& change);
  // Changes to several jobs, each under its attempt's lease (ended if `end_lease`, renewed
  // if `renew_at_ms` is set), in one transaction: one commit — one fsync, one turn on
  // NOTIFY's commit lock — for them all. A change whose lease no longer holds its job
  // (FAILED_PRECONDITION), or whose `change` fails, gets that status in `result` and writes
  // nothing; the others go on. Changes of one job apply in order. The status returned is
  // the transaction's: if it is not OK, nothing was written and the results mean nothing.
  struct LeasedChange {
    std::string job_id;
    std::string lease_id;
    bool end_lease = false;
    Change change;
    // A renewal: the lease's deadline becomes renew_at_ms plus its duration
    // (renew_duration_ms, if > 0, replaces that). `job` and `lease` then get the job as
    // changed and the lease as renewed.
    std::optional<int64_t> renew_at_ms = std::nullopt;
    int64_t renew_duration_ms = 0;
    absl::StatusOr<std::vector<v1::JobEvent>> result = std::vector<v1::JobEvent>();
    v1::Job job = {};
    LeaseRecord lease = {};
  };
  absl::Status ChangeLeasedBatch(std::vector<LeasedChange>& changes);
  // Moves the deadline of every lease in `lease_ids` still held to `deadline_ms`; how many.
  absl::StatusOr<int64_t> ExtendLeases(const std::vector<std::string>& lease_ids,
                                       int64_t deadline_ms);
  // Leases past their deadline or their attempt's at `now_ms`, oldest first, with their
  // job ids.
  absl::StatusOr<std::vector<std::pair<std::string, LeaseRecord>>> ExpiredLeases(int64_t now_ms,
                                                                                 int limit) const;
  // Leases whose LeaseRecord.worker_id is `holder`, with their job ids.
  absl::StatusOr<std::vector<std::pair<std::string, LeaseRecord>>> LeasesHeldBy(
      const std::string& holder) const;

  // Artifacts. Chunks of an upload are written as they come (invisible until committed);
  // CommitArtifact, fenced by `lease_id`, names the upload in `artifacts` (removing the
  // chunks of the artifact it replaces) and applies `change` (the job's list, its
  // ARTIFACT event). Upload ids are stored as the bits of a signed bigint.
  absl::Status WriteArtifactChunk(const std::string& job_id, uint64_t upload_id, uint32_t index,
                                  const std::string& data, int64_t now_ms);
  absl::StatusOr<std::vector<v1::JobEvent>> CommitArtifact(const std::string& job_id,
                                                           const std::string& lease_id,
                                                           const std::string& name,
                                                           const ArtifactRecord& record,
                                                           const Change& change);
  // Removes an upload's chunks.
  absl::Status RemoveUpload(const std::string& job_id, uint64_t upload_id);
  // Chunks no committed artifact names, written before `before_ms`; how many went.
  absl::StatusOr<int64_t> RemoveOrphanChunks(int64_t before_ms);
  absl::StatusOr<ArtifactRecord> GetArtifactRecord(const std::string& job_id,
                                                   const std::string& name) const;
  // NotFound once the upload was replaced or removed.
  absl::Status ReadArtifactChunk(const std::string& job_id, uint64_t upload_id, uint32_t index,
                                 std::string* data) const;
  // The job (without params), if `lease_id` still holds it.
  absl::StatusOr<std::optional<v1::Job>> GetLeasedJob(const std::string& job_id,
                                                      const std::string& lease_id) const;

  // Webhook deliveries, written with the events they deliver (a job's webhook wants them).
  // Any server may send a pending one: TakeDelivery holds it for one sender, pushing its
  // due time to hold_until_ms when it is due at now_ms (a held one is not due: another
  // server is sending it, and may take it again once the hold passes, if that server
  // died). RecordDelivery writes the outcome only while that hold is still the one.
  struct PendingDelivery {
    std::string job_id;
    int64_t sequence = 0;
    int64_t due_ms = 0;
  };
  // The `limit` soonest due, held ones too (at their hold's end).
  absl::StatusOr<std::vector<PendingDelivery>> PendingDeliveries(int limit) const;
  struct TakenDelivery {
    v1::Job job;  // without params
    v1::JobEvent event;
    v1::WebhookDelivery record;
  };
  // None when it is not due (held, delivered, given up) or its job is gone.
  absl::StatusOr<std::optional<TakenDelivery>> TakeDelivery(const std::string& job_id,
                                                            int64_t sequence, int64_t now_ms,
                                                            int64_t hold_until_ms);
  // The attempt's outcome, and when the next is due (none: delivered or given up). False
  // when the hold was lost (taken over, or the job removed): nothing was written.
  absl::StatusOr<bool> RecordDelivery(const std::string& job_id, int64_t sequence,
                                      int64_t held_until_ms, const v1::WebhookDelivery& record,
                                      std::optional<int64_t> next_due_ms);
  // A job's deliveries by sequence, as Job.webhook_deliveries shows them.
  absl::StatusOr<std::vector<v1::WebhookDelivery>> ListDeliveries(const std::string& job_id) const;

  // The job with its params (GetJob leaves them out). NotFound when absent.
  absl::StatusOr<v1::Job> GetJobWithParams(const std::string& job_id) const;

  // EventReader
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) const override;
  absl::StatusOr<std::optional<Tombstone>> GetTombstone(const std::string& job_id) const override;
  absl::StatusOr<std::vector<CommittedEventPtr>> ReadCommittedEvents(
      const std::string& job_id, int64_t after, int64_t until, size_t limit) const override;
  absl::Status VisitQueuedNewestFirst(size_t max_read,
                                      const std::function<bool(const v1::Job&)>& visit)
      const override;

  // Jobs newest first (create time, then id), from before a position, as ListJobs pages
  // through them; `visit` returns false to stop.
  struct JobQuery {
    std::vector<int> states;            // empty: any
    std::string type;                   // empty: any
    std::optional<std::string> tenant;  // nullopt: any
    // Only jobs before (create_ms, id); the default is past every job.
    int64_t before_ms = INT64_MAX;
    std::string before_id;
    int limit = 100;  // rows read
  };
  absl::Status VisitJobsNewestFirst(const JobQuery& query,
                                    const std::function<bool(const v1::Job&)>& visit) const;

  // Removal: the job, its events, leases, request key and artifacts go, and a tombstone
  // (`reason`, removed at now_ms, the job's tenant) answers for its id a while longer.
  // RemoveJob removes one job once `check` (given it locked) allows; NOT_FOUND if absent.
  absl::Status RemoveJob(const std::string& job_id,
                         const std::function<absl::Status(const v1::Job&)>& check,
                         absl::string_view reason, int64_t now_ms);
  // Up to `limit` finished jobs that ended before ended_before_ms; how many went.
  absl::StatusOr<int64_t> RemoveFinished(int64_t ended_before_ms, absl::string_view reason,
                                         int64_t now_ms, int limit);
  // Tombstones of jobs removed before `before_ms`; how many.
  absl::StatusOr<int64_t> RemoveTombstones(int64_t before_ms);

  // Per-key limits (pg_keys.cc). The keys of `type` (of `tenant` if given) holding back
  // ready jobs at `now_ms` because they are at `limit`: the most queued first, at most
  // `max`; `total` gets how many there are.
  absl::StatusOr<std::vector<KeyAtLimit>> KeysAtLimit(const std::string& type,
                                                      const KeyLimit& limit,
                                                      const std::optional<std::string>& tenant,
                                                      int64_t now_ms, int max, int* total) const;
  // Lanes with nothing queued whose bucket is untouched since `before_ms` (full again by
  // then); how many. One queued again later is served as a new one: first.
  absl::StatusOr<int64_t> RemoveIdleLanes(int64_t before_ms);

  // The job of a tenant's request_id, if any (without params).
  absl::StatusOr<std::optional<v1::Job>> FindRequest(const std::string& tenant,
                                                     const std::string& request_id) const;
  // The events of several jobs' sequence ranges (first..last of each), in one query: by
  // range, then by sequence, each with its wire form.
  struct EventRange {
    std::string job_id;
    int64_t first = 0, last = 0;
  };
  absl::StatusOr<std::vector<CommittedEventPtr>> ReadEventRanges(
      const std::vector<EventRange>& ranges) const;
  // How many jobs of `tenant` are QUEUED.
  absl::StatusOr<int64_t> CountQueued(const std::string& tenant) const;
  // How many jobs are QUEUED and RUNNING, by type, and the earliest ready time among the
  // queued that may run at `now_ms` (0: none).
  struct LiveCount {
    int64_t queued = 0;
    int64_t running = 0;
    int64_t oldest_ready_ms = 0;
  };
  absl::StatusOr<std::map<std::string, LiveCount>> CountLive(int64_t now_ms) const;
  // Paused types (PauseType): set (`pause` given) or cleared; and all of them.
  absl::Status SetTypePause(const std::string& type, const std::optional<v1::TypePause>& pause);
  absl::StatusOr<std::map<std::string, v1::TypePause>> PausedTypes() const;
  // The jobs of `job_ids` that exist, each to `visit`, in one query.
  absl::Status VisitJobs(const std::vector<std::string>& job_ids,
                         const std::function<void(const v1::Job&)>& visit) const;
  // Jobs in `state`, each to `visit` (for a feed seeding its hub).
  absl::Status VisitJobsIn(v1::Job::State state,
                           const std::function<void(const v1::Job&)>& visit) const;

 private:
  explicit PgStore(const std::string& url, int pool_size) : pool_(url, pool_size) {}
  // The first row's record, if any.
  template <typename Message>
  absl::StatusOr<std::optional<Message>> FirstRecord(absl::string_view sql,
                                                     const std::vector<PgParam>& params) const;
  // Runs one statement by itself; the rows it touched.
  absl::StatusOr<int64_t> Affected(absl::string_view sql, const std::vector<PgParam>& params);
  // Rows of (job_id, LeaseRecord).
  absl::StatusOr<std::vector<std::pair<std::string, LeaseRecord>>> SelectLeases(
      absl::string_view sql, const std::vector<PgParam>& params) const;
  // Each row's first column, a serialized Message, to `visit` (false stops).
  template <typename Message>
  absl::Status VisitRecords(absl::string_view sql, const std::vector<PgParam>& params,
                            const std::function<bool(Message)>& visit) const;

  mutable PgPool pool_;  // a read takes a connection too
};

}  // namespace jobstream::storage::pg
