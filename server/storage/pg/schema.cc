#include "server/storage/pg/schema.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace jobstream::storage::pg {
namespace {

// Step N brings version N-1 to N. A step, once released, never changes: a change is a new
// step. Rows hold the same protobuf records as the RocksDB store; columns beside them hold
// what queries select and order by. Times are Unix milliseconds.
constexpr const char* kSteps[] = {
    // 1: jobs, their events, and what finds them.
    R"sql(
CREATE TABLE jobs (
  id            text PRIMARY KEY,
  tenant        text NOT NULL,
  type          text NOT NULL,
  state         smallint NOT NULL,      -- Job.State
  priority      integer NOT NULL,
  ready_ms      bigint,                 -- while QUEUED: when it may start
  create_ms     bigint NOT NULL,
  end_ms        bigint,                 -- once finished
  last_sequence bigint NOT NULL,        -- the job row is the lock that hands out the next
  record        bytea NOT NULL,         -- Job, without params
  params        bytea                   -- google.protobuf.Struct
);
-- Claiming: the best ready job of a type, FOR UPDATE SKIP LOCKED.
CREATE INDEX jobs_queue ON jobs (type, priority DESC, ready_ms, id) WHERE state = 1;
CREATE INDEX jobs_running ON jobs (type) WHERE state = 2;  -- counts against type caps
CREATE INDEX jobs_queued_by_tenant ON jobs (tenant) WHERE state = 1;  -- against tenant caps
CREATE INDEX jobs_by_state ON jobs (state, create_ms, id);
CREATE INDEX jobs_by_type_state ON jobs (type, state, create_ms, id);
CREATE INDEX jobs_by_time ON jobs (create_ms, id);
CREATE INDEX jobs_finished ON jobs (end_ms) WHERE end_ms IS NOT NULL;

CREATE TABLE events (
  job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  sequence bigint NOT NULL,
  event    bytea NOT NULL,              -- JobEvent
  PRIMARY KEY (job_id, sequence)
);

-- request_id is idempotent per tenant: the unique key is the guarantee. Its row is
-- written first (a twin waits on the key, then finds the winner's job), so the job it
-- names is checked at commit.
CREATE TABLE requests (
  tenant     text NOT NULL,
  request_id text NOT NULL,
  job_id     text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  PRIMARY KEY (tenant, request_id)
);

-- An attempt's lease: lease_id fences every later call of its holder.
-- The sweeper ends attempts past either deadline: the lease's (renewed by its holder)
-- or the attempt's timeout (fixed when it started).
CREATE TABLE leases (
  job_id              text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  lease_id            text NOT NULL,
  deadline_ms         bigint NOT NULL,
  attempt_deadline_ms bigint,
  holder              text NOT NULL,    -- its worker_id (a server's own runs: its id)
  record              bytea NOT NULL    -- LeaseRecord
);
CREATE INDEX leases_by_holder ON leases (holder);
CREATE INDEX leases_by_deadline ON leases (deadline_ms);
CREATE INDEX leases_by_attempt_deadline ON leases (attempt_deadline_ms)
  WHERE attempt_deadline_ms IS NOT NULL;

-- A removed job's id answers "deleted/expired at ..." a while longer.
CREATE TABLE tombstones (
  job_id     text PRIMARY KEY,
  tenant     text NOT NULL,
  removed_ms bigint NOT NULL,
  reason     text NOT NULL
);
CREATE INDEX tombstones_by_time ON tombstones (removed_ms);

CREATE TABLE artifacts (
  job_id    text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  name      text NOT NULL,
  upload_id bigint NOT NULL,
  record    bytea NOT NULL,             -- ArtifactRecord
  PRIMARY KEY (job_id, name)
);
-- Chunks are written as they come, before their artifact is committed; an upload cut
-- off by a crash leaves chunks no artifact names, removed a day later.
CREATE TABLE artifact_chunks (
  job_id     text NOT NULL,
  upload_id  bigint NOT NULL,
  chunk      integer NOT NULL,
  written_ms bigint NOT NULL,
  data       bytea NOT NULL,
  PRIMARY KEY (job_id, upload_id, chunk)
);
CREATE INDEX artifact_chunks_by_time ON artifact_chunks (written_ms);

CREATE TABLE webhook_deliveries (
  job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  sequence bigint NOT NULL,
  due_ms   bigint,                      -- while PENDING
  record   bytea NOT NULL,              -- WebhookDelivery
  PRIMARY KEY (job_id, sequence)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_ms) WHERE due_ms IS NOT NULL;
)sql",
    // 2: schedules.
    R"sql(
CREATE TABLE schedules (
  tenant  text NOT NULL,
  id      text NOT NULL,
  record  bytea NOT NULL,               -- ScheduleRecord
  version bigint NOT NULL,              -- as in the record: what Update compares
  wake_ms bigint NOT NULL,              -- 0: never
  PRIMARY KEY (tenant, id)
);
CREATE INDEX schedules_wake ON schedules (wake_ms) WHERE wake_ms > 0;
)sql",
    // 3: job graphs. A row for each job a WAITING job waits for (its record's
    // waiting_for), found by that job when it ends.
    R"sql(
CREATE TABLE job_dependencies (
  dependency_id text NOT NULL,
  job_id        text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (dependency_id, job_id)
);
CREATE INDEX job_dependencies_by_job ON job_dependencies (job_id);
)sql",
    // 4: unique keys.
    R"sql(
-- unique_key: the job that took each tenant's key last (Submit asks it whether it still
-- holds it). Written before its job, so the job it names is checked at commit.
CREATE TABLE uniques (
  tenant     text NOT NULL,
  unique_key text NOT NULL,
  job_id     text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  PRIMARY KEY (tenant, unique_key)
);
)sql",
    // 5: batches.
    R"sql(
-- A batch's children, by its parent (a SubmitBatch's answer, again for a retried call).
CREATE TABLE batches (
  parent_id text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  child_ids text[] NOT NULL
);
-- A row per child (and `then` job) whose end its parent has not counted yet: the leading
-- server counts each end (a CHILD event on the parent) and removes the row, in one
-- transaction.
CREATE TABLE batch_children (
  child_id  text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  parent_id text NOT NULL
);
CREATE INDEX batch_children_by_parent ON batch_children (parent_id);
)sql",
    // 6: fair claims: a tenant's queued jobs of a type, in claim order (ClaimLeased takes
    // the tenants in turn).
    R"sql(
CREATE INDEX jobs_queue_by_tenant ON jobs (tenant, type, priority DESC, ready_ms, id)
  WHERE state = 1;
)sql",
    // 7: per-key limits and turns. A job's concurrency_key (its Submit's; '' for none)
    // beside it; claims take a type's (tenant, key) lanes in turn, found by skipping
    // through jobs_queue_by_key, and count each lane's running jobs through
    // jobs_running_by_key (which counts a type's too, as jobs_running did). A lane's row
    // says when it was last served (claims go to the least recently served first) and
    // holds its token bucket for the type's keyRate, as of tokens_ms; the sweep removes
    // rows of lanes with nothing queued whose bucket is full again.
    R"sql(
ALTER TABLE jobs ADD COLUMN concurrency_key text NOT NULL DEFAULT '';
CREATE INDEX jobs_queue_by_key ON jobs (type, tenant, concurrency_key, priority DESC, ready_ms, id)
  WHERE state = 1;
CREATE INDEX jobs_running_by_key ON jobs (type, tenant, concurrency_key) WHERE state = 2;
DROP INDEX jobs_queue_by_tenant;
DROP INDEX jobs_running;
CREATE SEQUENCE lane_served;
CREATE TABLE lanes (
  type            text NOT NULL,
  tenant          text NOT NULL,
  concurrency_key text NOT NULL,
  served          bigint NOT NULL,      -- claim order: lane_served * 1000 + the job's place
  tokens          double precision,     -- keyRate's bucket, as of tokens_ms
  tokens_ms       bigint,
  PRIMARY KEY (type, tenant, concurrency_key)
);
)sql",
    // 8: claims take every queued job through jobs_queue_by_key (ClaimLeased keeps the
    // planner to its order), which serves whatever jobs_queue did (state = 1, type
    // first). jobs_queue only cost every queue write an index to maintain, and offered the
    // planner, on statistics gathered while the queue was nearly empty, a walk and sort of
    // a type's whole queue (2.1 ms a claim with 2,300 jobs queued).
    R"sql(
DROP INDEX jobs_queue;
)sql",
    // 9: paused types (PauseType): a claim leaves their jobs queued.
    R"sql(
CREATE TABLE paused_types (
  type   text PRIMARY KEY,
  record bytea NOT NULL                 -- TypePause
);
)sql",
};

// Any fixed number: every jobstream server takes the same lock to migrate.
constexpr int64_t kMigrationLock = 0x6a6f6273747265;  // "jobstre"

}  // namespace

int SchemaVersion() { return static_cast<int>(std::size(kSteps)); }

absl::StatusOr<int> MigrateSchema(PgConnection& conn) {
  auto run = [&](absl::string_view sql) { return conn.ExecScript(sql); };
  if (absl::Status s = run("BEGIN"); !s.ok()) return s;
  auto migrate = [&]() -> absl::StatusOr<int> {
    if (absl::Status s = conn.Exec("SELECT pg_advisory_xact_lock($1)",
                                   {PgParam::Int(kMigrationLock)}).status();
        !s.ok()) {
      return s;
    }
    if (absl::Status s = run("CREATE TABLE IF NOT EXISTS jobstream_schema "
                             "(version integer NOT NULL)");
        !s.ok()) {
      return s;
    }
    auto found = conn.Exec("SELECT version FROM jobstream_schema");
    if (!found.ok()) return found.status();
    int64_t version = 0;
    if (found->rows() == 0) {
      if (absl::Status s = run("INSERT INTO jobstream_schema VALUES (0)"); !s.ok()) return s;
    } else {
      auto v = found->GetInt64(0, 0);
      if (!v.ok()) return v.status();
      version = *v;
    }
    if (version > SchemaVersion()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the database's jobstream schema is version ", version, ", newer than this server's (",
          SchemaVersion(), "): a newer jobstream-server wrote it; run that version"));
    }
    for (int64_t step = version + 1; step <= SchemaVersion(); ++step) {
      if (absl::Status s = run(kSteps[step - 1]); !s.ok()) {
        return absl::Status(s.code(),
                            absl::StrCat("schema step ", step, ": ", s.message()));
      }
    }
    if (absl::Status s = conn.Exec("UPDATE jobstream_schema SET version = $1",
                                   {PgParam::Int(SchemaVersion())}).status();
        !s.ok()) {
      return s;
    }
    return static_cast<int>(version);
  };
  absl::StatusOr<int> result = migrate();
  if (!result.ok()) {
    run("ROLLBACK").IgnoreError();
    return result;
  }
  if (absl::Status s = run("COMMIT"); !s.ok()) return s;
  return result;
}

}  // namespace jobstream::storage::pg
