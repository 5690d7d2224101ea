#include "server/storage/pg/pg_store.h"

#include <set>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/message_differencer.h"
#include "jobstream/v1/job_states.h"
#include "server/metrics/server_metrics.h"
#include "server/storage/deliveries.h"
#include "server/storage/lease_status.h"
#include "server/storage/pg/pg_rows.h"
#include "server/storage/pg/schema.h"

namespace jobstream::storage::pg {
namespace rows {

using v1::Job;
using v1::JobEvent;

// A text[] literal: each element quoted, so any name survives.
std::string TextArray(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// The params column (NULL for none).
absl::StatusOr<google::protobuf::Struct> ParamsAt(const PgResult& rows, int row, int col) {
  if (rows.IsNull(row, col)) return google::protobuf::Struct();
  return Parse<google::protobuf::Struct>(rows.Get(row, col), "params");
}

absl::Status NoSuchJob(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
}

// The job's row, locked for this transaction.
absl::StatusOr<Job> LockJob(PgConnection& conn, const std::string& job_id) {
  auto row = conn.Exec("SELECT record FROM jobs WHERE id = $1 FOR UPDATE", {PgParam::Text(job_id)},
                       /*binary_results=*/true);
  if (!row.ok()) return row.status();
  if (row->rows() == 0) return NoSuchJob(job_id);
  return Parse<Job>(row->Get(0, 0), absl::StrCat("job ", job_id));
}

// Numbers `events` after the job's last sequence; each carries the job as changed, as of
// its own sequence.
void Number(Job& job, std::vector<JobEvent>& events) {
  job.clear_params();
  for (JobEvent& e : events) {
    job.set_last_sequence(job.last_sequence() + 1);
    e.set_job_id(job.id());
    e.set_sequence(job.last_sequence());
    *e.mutable_status() = job;
    v1::StampAction(e);
  }
}

// The columns of jobs that queries select and order by, from the record.
std::vector<PgParam> JobColumns(const Job& job) {
  return {PgParam::Text(job.id()),
          PgParam::Text(job.tenant()),
          PgParam::Text(job.type()),
          PgParam::Int(job.state()),
          PgParam::Int(job.priority()),
          job.state() == Job::QUEUED ? PgParam::Int(v1::ReadyMs(job)) : PgParam::Null(),
          PgParam::Int(absl::ToUnixMillis(v1::ToTime(job.create_time()))),
          v1::IsFinished(job.state()) ? PgParam::Int(absl::ToUnixMillis(v1::ToTime(job.end_time())))
                                      : PgParam::Null(),
          PgParam::Int(job.last_sequence()),
          PgParam::Binary(job.SerializeAsString())};
}

// Writes the events and the webhook deliveries `job` owes for them — deferred, to go with
// the COMMIT (the caller's transaction holds the job's row).
void InsertEvents(PgConnection& conn, const Job& job, const std::vector<JobEvent>& events) {
  const absl::Time now = absl::Now();
  for (const JobEvent& e : events) {
    conn.Defer("INSERT INTO events (job_id, sequence, event) VALUES ($1, $2, $3)",
               {PgParam::Text(e.job_id()), PgParam::Int(e.sequence()),
                PgParam::Binary(e.SerializeAsString())});
    if (auto delivery = DeliveryOf(job, e.sequence(), e.type(), now)) {
      conn.Defer("INSERT INTO webhook_deliveries (job_id, sequence, due_ms, record) "
                 "VALUES ($1, $2, $3, $4)",
                 {PgParam::Text(e.job_id()), PgParam::Int(e.sequence()),
                  PgParam::Int(absl::ToUnixMillis(now)),
                  PgParam::Binary(delivery->SerializeAsString())});
    }
  }
}

// Announces a job's events first..last to every server's feed, with the COMMIT.
void Announce(PgConnection& conn, const std::string& job_id, int64_t first, int64_t last) {
  conn.Defer("SELECT pg_notify($1, $2)",
             {PgParam::Text(kEventsChannel), PgParam::Text(absl::StrCat(job_id, " ", first, " ",
                                                                        last))});
}

// Writes the job's row (deferred).
void WriteJob(PgConnection& conn, const Job& job) {
  conn.Defer("UPDATE jobs SET tenant = $2, type = $3, state = $4, priority = $5, ready_ms = $6, "
             "create_ms = $7, end_ms = $8, last_sequence = $9, record = $10 WHERE id = $1",
             JobColumns(job));
}

void NumberAsOf(int64_t last_sequence, std::vector<JobEvent>& events) {
  for (JobEvent& e : events) {
    e.set_sequence(++last_sequence);
    e.set_job_id(e.status().id());
    e.mutable_status()->set_last_sequence(last_sequence);
    e.mutable_status()->clear_params();
    v1::StampAction(e);
  }
}

// Applies `change` to the locked `job`, numbers the events it makes into `events` and
// defers their inserts; whether the job changed (not if the change left it as it was: a
// report that moved nothing, a cancel asked again). If the change fails, `job` is left
// as it was and nothing is deferred. The row and the announcement are the caller's, so a
// batch writes each once per job however many changes it applies.
absl::StatusOr<bool> ApplyLocked(PgConnection& conn, Job& job, const PgStore::Change& change,
                                 std::vector<JobEvent>& events) {
  Job next = job;
  if (absl::Status s = change(next, events); !s.ok()) return s;
  if (events.empty() && google::protobuf::util::MessageDifferencer::Equals(job, next)) {
    return false;
  }
  Number(next, events);
  InsertEvents(conn, next, events);
  job = std::move(next);
  return true;
}

// Applies `change` to the locked `job` and writes the job and its events; nothing if the
// change left the job as it was.
absl::StatusOr<std::vector<JobEvent>> ChangeLocked(PgConnection& conn, Job job,
                                                   const PgStore::Change& change) {
  std::vector<JobEvent> events;
  auto changed = ApplyLocked(conn, job, change, events);
  if (!changed.ok()) return changed.status();
  if (*changed) {
    WriteJob(conn, job);
    if (!events.empty()) Announce(conn, job.id(), events.front().sequence(), job.last_sequence());
  }
  return events;
}

// A new job's request_id (if any), taken in the caller's transaction: waits for a twin in
// flight, then either the job takes the key (nullopt) or a twin has it (the twin's job).
absl::StatusOr<std::optional<Job>> TakeRequest(PgConnection& conn, const Job& job) {
  if (job.request_id().empty()) return std::nullopt;
  auto took = conn.Exec(
      "INSERT INTO requests (tenant, request_id, job_id) VALUES ($1, $2, $3) "
      "ON CONFLICT DO NOTHING RETURNING job_id",
      {PgParam::Text(job.tenant()), PgParam::Text(job.request_id()), PgParam::Text(job.id())});
  if (!took.ok()) return took.status();
  if (took->rows() > 0) return std::nullopt;
  auto twin = conn.Exec(
      "SELECT j.record FROM requests r JOIN jobs j ON j.id = r.job_id "
      "WHERE r.tenant = $1 AND r.request_id = $2",
      {PgParam::Text(job.tenant()), PgParam::Text(job.request_id())}, /*binary_results=*/true);
  if (!twin.ok()) return twin.status();
  if (twin->rows() == 0) return absl::AbortedError("the job of this request_id was removed meanwhile");
  auto found = Parse<Job>(twin->Get(0, 0), "the request's job");
  if (!found.ok()) return found.status();
  return std::optional<Job>(*std::move(found));
}

// A new job's unique_key (if any), taken in the caller's transaction: nullopt if the job
// takes it; else the job holding it, which `holds` says still does.
absl::StatusOr<std::optional<Job>> TakeUnique(PgConnection& conn, const Job& job,
                                              const PgStore::Holds& holds) {
  if (job.unique_key().empty() || !holds) return std::nullopt;
  const std::vector<PgParam> key = {PgParam::Text(job.tenant()), PgParam::Text(job.unique_key()),
                                    PgParam::Text(job.id())};
  auto took = conn.Exec("INSERT INTO uniques (tenant, unique_key, job_id) VALUES ($1, $2, $3) "
                        "ON CONFLICT DO NOTHING RETURNING job_id",
                        key);
  if (!took.ok()) return took.status();
  if (took->rows() > 0) return std::nullopt;
  // Taken: by a job that may still hold it (the row is locked until this commits).
  auto holder = conn.Exec(
      "SELECT j.record FROM uniques u LEFT JOIN jobs j ON j.id = u.job_id "
      "WHERE u.tenant = $1 AND u.unique_key = $2 FOR UPDATE OF u",
      {key[0], key[1]}, /*binary_results=*/true);
  if (!holder.ok()) return holder.status();
  if (holder->rows() == 0) return absl::AbortedError("the unique key was freed meanwhile");
  if (!holder->IsNull(0, 0)) {
    auto found = Parse<Job>(holder->Get(0, 0), "the unique key's job");
    if (!found.ok()) return found.status();
    if (holds(*found)) return std::optional<Job>(*std::move(found));
  }
  conn.Defer("UPDATE uniques SET job_id = $3 WHERE tenant = $1 AND unique_key = $2", key);
  return std::nullopt;
}

// A new job's request_id and unique_key, taken in the caller's transaction; true if an
// existing job answers the Submit instead (`out`: a twin, or the unique key's holder —
// then the status is ALREADY_EXISTS, to roll back the request_id taken meanwhile).
absl::StatusOr<bool> FindExisting(PgConnection& conn, const Job& job, const PgStore::Holds& holds,
                                  PgStore::Inserted& out) {
  auto twin = TakeRequest(conn, job);
  if (!twin.ok()) return twin.status();
  if (twin->has_value()) {
    out = {**std::move(twin), false};
    return true;
  }
  auto holder = TakeUnique(conn, job, holds);
  if (!holder.ok()) return holder.status();
  if (!holder->has_value()) return false;
  out = {**std::move(holder), false, true};
  return absl::AlreadyExistsError("deduplicated");
}

// Inserts a new job's row (numbered: its last_sequence is its events').
absl::Status InsertJobRow(PgConnection& conn, const Job& job,
                          const google::protobuf::Struct& params) {
  std::vector<PgParam> columns = JobColumns(job);
  columns.push_back(params.fields().empty() ? PgParam::Null()
                                            : PgParam::Binary(params.SerializeAsString()));
  columns.push_back(PgParam::Text(job.concurrency_key()));
  return conn
      .Exec("INSERT INTO jobs (id, tenant, type, state, priority, ready_ms, create_ms, end_ms, "
            "last_sequence, record, params, concurrency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            "$8, $9, $10, $11, $12)",
            columns)
      .status();
}

}  // namespace rows

using namespace rows;  // NOLINT: this file's own helpers, shared with pg_batches.cc
using v1::Job;
using v1::JobEvent;

// ---------------------------------------------------------------------------------------
// PgPool

absl::StatusOr<std::unique_ptr<PgConnection>> PgPool::Take() {
  {
    std::unique_lock lock(mu_);
    if (idle_.empty() && open_ >= size_) {  // every connection is busy: a wait to count
      const absl::Time start = absl::Now();
      freed_.wait(lock, [this] { return !idle_.empty() || open_ < size_; });
      server_metrics::ObservePgPoolWait(absl::Now() - start);
    } else {
      server_metrics::ObservePgPoolWait(absl::ZeroDuration());
    }
    if (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++open_;
  }
  auto conn = PgConnection::Connect(url_);
  if (!conn.ok()) {
    std::lock_guard lock(mu_);
    --open_;
    freed_.notify_one();
  }
  return conn;
}

void PgPool::Give(std::unique_ptr<PgConnection> conn) {
  std::lock_guard lock(mu_);
  if (conn->ok()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;  // broken: the next Take connects again
  }
  freed_.notify_one();
}

absl::Status PgPool::Use(const std::function<absl::Status(PgConnection&)>& body) {
  auto conn = Take();
  if (!conn.ok()) {
    server_metrics::CountPgUnavailable();
    return conn.status();
  }
  const absl::Time start = absl::Now();
  absl::Status status = body(**conn);
  // What the body deferred goes now (or not at all, if it failed).
  if (status.ok()) {
    status = (*conn)->Flush();
  } else {
    (*conn)->DropDeferred();
  }
  server_metrics::ObservePgCall(absl::Now() - start);
  if (absl::IsUnavailable(status) && !(*conn)->ok()) server_metrics::CountPgUnavailable();
  Give(*std::move(conn));
  return status;
}

absl::Status PgPool::Transact(const std::function<absl::Status(PgConnection&)>& body) {
  constexpr int kAttempts = 5;
  absl::Status status;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    status = Use([&](PgConnection& conn) {
      // BEGIN goes with the first statement, COMMIT with the last writes: a transaction
      // that reads once and then writes is two round trips.
      conn.Defer("BEGIN");
      absl::Status s = body(conn);
      if (s.ok() && PQtransactionStatus(conn.raw()) == PQTRANS_INERROR) {
        s = absl::InternalError("a statement failed and its error was not returned");
      }
      if (s.ok()) {
        conn.Defer("COMMIT");
        s = conn.Flush();
        if (s.ok()) return s;
      }
      conn.DropDeferred();
      if (conn.ok()) conn.ExecScript("ROLLBACK").IgnoreError();
      return s;
    });
    if (!absl::IsAborted(status)) break;  // a lost race runs again
    server_metrics::CountPgRetry();
  }
  return status;
}

// ---------------------------------------------------------------------------------------
// PgStore

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(const std::string& url, int pool_size) {
  if (absl::Status s = ValidatePostgresUrl(url); !s.ok()) return s;
  if (pool_size < 1) return absl::InvalidArgumentError("the pool needs at least 1 connection");
  std::unique_ptr<PgStore> store(new PgStore(url, pool_size));
  absl::Status migrated =
      store->pool_.Use([](PgConnection& conn) { return MigrateSchema(conn).status(); });
  if (!migrated.ok()) return migrated;
  return store;
}

namespace rows {

absl::Status InsertJobsOn(PgConnection& conn, std::vector<PgStore::NewJob>& jobs) {
  if (jobs.empty()) return absl::OkStatus();
  constexpr int kPerJob = 15;  // 12 columns, the event's sequence and bytes, the announcement
  std::string job_rows, event_rows, notices;
  std::vector<PgParam> params;
  params.reserve(jobs.size() * kPerJob + 1);
  for (size_t i = 0; i < jobs.size(); ++i) {
    PgStore::NewJob& n = jobs[i];
    std::vector<JobEvent> events = {n.created};
    n.job.set_last_sequence(0);
    Number(n.job, events);
    n.created = events[0];
    for (PgParam& p : JobColumns(n.job)) params.push_back(std::move(p));
    params.push_back(n.params.fields().empty() ? PgParam::Null()
                                               : PgParam::Binary(n.params.SerializeAsString()));
    params.push_back(PgParam::Text(n.job.concurrency_key()));
    params.push_back(PgParam::Int(n.created.sequence()));
    params.push_back(PgParam::Binary(n.created.SerializeAsString()));
    params.push_back(PgParam::Text(absl::StrCat(n.job.id(), " 1 1")));
    const size_t b = i * kPerJob;  // $b+1 .. $b+15
    absl::StrAppend(&job_rows, i > 0 ? ", " : "", "(");
    for (int c = 1; c <= 12; ++c) absl::StrAppend(&job_rows, c > 1 ? ", $" : "$", b + c);
    job_rows += ")";
    absl::StrAppend(&event_rows, i > 0 ? ", " : "", "($", b + 1, ", $", b + 13, ", $", b + 14, ")");
    absl::StrAppend(&notices, i > 0 ? ", " : "", "($", b + 15, ")");
  }
  // The deliveries of webhooks that want "created", after every job's parameters.
  const absl::Time now = absl::Now();
  std::string delivery_rows;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto delivery = DeliveryOf(jobs[i].job, 1, JobEvent::CREATED, now);
    if (!delivery) continue;
    params.push_back(PgParam::Int(absl::ToUnixMillis(now)));
    params.push_back(PgParam::Binary(delivery->SerializeAsString()));
    absl::StrAppend(&delivery_rows, delivery_rows.empty() ? "" : ", ", "($", i * kPerJob + 1,
                    ", 1, $", params.size() - 1, "::bigint, $", params.size(), "::bytea)");
  }
  params.push_back(PgParam::Text(kEventsChannel));
  const std::string sql = absl::StrCat(
      "WITH j AS (INSERT INTO jobs (id, tenant, type, state, priority, ready_ms, create_ms, "
      "end_ms, last_sequence, record, params, concurrency_key) VALUES ",
      job_rows, "), e AS (INSERT INTO events (job_id, sequence, event) VALUES ", event_rows, ")",
      delivery_rows.empty() ? ""
                            : absl::StrCat(", d AS (INSERT INTO webhook_deliveries (job_id, "
                                           "sequence, due_ms, record) VALUES ",
                                           delivery_rows, ")"),
      " SELECT pg_notify($", params.size(), ", n.p) FROM (VALUES ", notices, ") AS n(p)");
  return conn.Exec(sql, params).status();
}

}  // namespace rows

absl::Status PgStore::InsertJobs(std::vector<NewJob>& jobs) {
  return pool_.Use([&](PgConnection& conn) { return InsertJobsOn(conn, jobs); });
}

absl::StatusOr<PgStore::Inserted> PgStore::InsertJob(const Job& job,
                                                     const google::protobuf::Struct& params,
                                                     JobEvent created, const Holds& holds) {
  if (job.request_id().empty() && job.unique_key().empty()) {
    // The common case: one statement, one round trip.
    std::vector<NewJob> one = {{job, params, std::move(created)}};
    if (absl::Status s = InsertJobs(one); !s.ok()) return s;
    return Inserted{std::move(one[0].job), true};
  }
  Inserted out;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    if (absl::StatusOr<bool> found = FindExisting(conn, job, holds, out); !found.ok() || *found) {
      return found.status();
    }
    Job stored = job;
    std::vector<JobEvent> events = {created};
    stored.set_last_sequence(0);
    Number(stored, events);
    if (absl::Status s = InsertJobRow(conn, stored, params); !s.ok()) return s;
    InsertEvents(conn, stored, events);
    Announce(conn, stored.id(), 1, 1);
    out = {std::move(stored), true};
    return absl::OkStatus();
  });
  if (out.deduplicated) return out;
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<PgStore::Inserted> PgStore::InsertWaitingJob(const Job& job,
                                                            const google::protobuf::Struct& params,
                                                            const Wait& wait, const Holds& holds) {
  Inserted out;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    if (absl::StatusOr<bool> found = FindExisting(conn, job, holds, out); !found.ok() || *found) {
      return found.status();
    }
    // FOR SHARE: none of them can end until this commits, so each one either ended before
    // (and is read so) or ends after and finds this job's row in job_dependencies.
    std::vector<std::string> ids(job.depends_on().begin(), job.depends_on().end());
    auto rows = conn.Exec("SELECT record FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR SHARE",
                          {PgParam::Text(TextArray(ids))}, /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    std::vector<Job> dependencies;
    for (int i = 0; i < rows->rows(); ++i) {
      auto dependency = Parse<Job>(rows->Get(i, 0), "a job");
      if (!dependency.ok()) return dependency.status();
      dependencies.push_back(*std::move(dependency));
    }
    auto events = wait(dependencies);
    if (!events.ok()) return events.status();
    NumberAsOf(0, *events);
    const Job& stored = events->back().status();
    if (absl::Status s = InsertJobRow(conn, stored, params); !s.ok()) return s;
    InsertEvents(conn, stored, *events);
    if (stored.state() == Job::WAITING) {
      std::vector<std::string> waiting(stored.waiting_for().begin(), stored.waiting_for().end());
      conn.Defer("INSERT INTO job_dependencies (dependency_id, job_id) "
                 "SELECT unnest($1::text[]), $2",
                 {PgParam::Text(TextArray(waiting)), PgParam::Text(stored.id())});
    }
    Announce(conn, stored.id(), 1, stored.last_sequence());
    out = {stored, true};
    return absl::OkStatus();
  });
  if (out.deduplicated) return out;
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<JobEvent>> PgStore::MoveDependents(const std::vector<std::string>& ended,
                                                              const Move& move) {
  std::vector<JobEvent> written;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    written.clear();
    const PgParam ended_ids = PgParam::Text(TextArray(ended));
    auto edges = conn.Exec(
        "SELECT dependency_id, job_id FROM job_dependencies WHERE dependency_id = ANY($1::text[])",
        {ended_ids});
    if (!edges.ok()) return edges.status();
    if (edges->rows() == 0) return absl::OkStatus();
    // The ended jobs as they ended; one removed since (only ended jobs are removed) counts
    // as cancelled, how it ended being unknown.
    std::map<std::string, Job> finished;
    auto records = conn.Exec("SELECT record FROM jobs WHERE id = ANY($1::text[])", {ended_ids},
                             /*binary_results=*/true);
    if (!records.ok()) return records.status();
    std::set<std::string> found;
    for (int i = 0; i < records->rows(); ++i) {
      auto job = Parse<Job>(records->Get(i, 0), "a job");
      if (!job.ok()) return job.status();
      found.insert(job->id());
      if (v1::IsFinished(job->state())) finished[job->id()] = *std::move(job);
    }
    for (const std::string& id : ended) {
      if (found.contains(id)) continue;
      Job gone;
      gone.set_id(id);
      gone.set_state(Job::CANCELLED);
      gone.mutable_error()->set_message("the job was removed");
      finished[id] = std::move(gone);
    }
    std::map<std::string, std::vector<const Job*>> dependents;  // in id order: lock order
    std::vector<std::string> done_with;
    for (int i = 0; i < edges->rows(); ++i) {
      auto it = finished.find(std::string(edges->Get(i, 0)));
      if (it == finished.end()) continue;  // not ended after all
      dependents[std::string(edges->Get(i, 1))].push_back(&it->second);
    }
    for (const auto& [id, job] : finished) done_with.push_back(id);
    std::vector<std::string> ids;
    for (const auto& [id, unused] : dependents) ids.push_back(id);
    auto locked = conn.Exec("SELECT record FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                            {PgParam::Text(TextArray(ids))}, /*binary_results=*/true);
    if (!locked.ok()) return locked.status();
    std::vector<std::string> settled;
    for (int i = 0; i < locked->rows(); ++i) {
      auto job = Parse<Job>(locked->Get(i, 0), "a job");
      if (!job.ok()) return job.status();
      const std::vector<const Job*>& ends = dependents[job->id()];
      auto made = ChangeLocked(conn, *job, [&](Job& j, std::vector<JobEvent>& events) {
        move(j, ends, events);
        return absl::OkStatus();
      });
      if (!made.ok()) return made.status();
      if (!made->empty() && made->back().status().state() != Job::WAITING) {
        settled.push_back(job->id());
      }
      for (JobEvent& e : *made) written.push_back(std::move(e));
    }
    conn.Defer("DELETE FROM job_dependencies WHERE dependency_id = ANY($1::text[])",
               {PgParam::Text(TextArray(done_with))});
    if (!settled.empty()) {
      conn.Defer("DELETE FROM job_dependencies WHERE job_id = ANY($1::text[])",
                 {PgParam::Text(TextArray(settled))});
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return written;
}

absl::StatusOr<std::vector<std::string>> PgStore::EndedDependencies(int limit) const {
  std::vector<std::string> ids;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(
        "SELECT DISTINCT d.dependency_id FROM job_dependencies d "
        "LEFT JOIN jobs j ON j.id = d.dependency_id "
        "WHERE j.id IS NULL OR j.end_ms IS NOT NULL LIMIT $1",
        {PgParam::Int(limit)});
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) ids.emplace_back(rows->Get(i, 0));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return ids;
}

absl::StatusOr<std::vector<JobEvent>> PgStore::Transition(const std::string& job_id,
                                                          const Change& change) {
  std::vector<JobEvent> events;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    auto job = LockJob(conn, job_id);
    if (!job.ok()) return job.status();
    auto made = ChangeLocked(conn, *std::move(job), change);
    if (!made.ok()) return made.status();
    events = *std::move(made);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return events;
}

template <typename Message>
absl::Status PgStore::VisitRecords(absl::string_view sql, const std::vector<PgParam>& params,
                                   const std::function<bool(Message)>& visit) const {
  return pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(sql, params, /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto record = Parse<Message>(rows->Get(i, 0), "a stored record");
      if (!record.ok()) return record.status();
      if (!visit(*std::move(record))) break;
    }
    return absl::OkStatus();
  });
}

template <typename Message>
absl::StatusOr<std::optional<Message>> PgStore::FirstRecord(
    absl::string_view sql, const std::vector<PgParam>& params) const {
  std::optional<Message> first;
  absl::Status status = VisitRecords<Message>(sql, params, [&](Message record) {
    first = std::move(record);
    return false;
  });
  if (!status.ok()) return status;
  return first;
}

namespace {

// Locks the rows of `job_ids` (in id order, so two transactions locking several never
// deadlock) and reads each locked job with its lease, if it has one. One round trip: the
// read goes in the same pipeline as the lock, and as a statement of its own it sees what
// committed before the lock was granted (in READ COMMITTED a statement's snapshot is
// taken when it starts; a row re-read under FOR UPDATE would come with the lease as it
// was before the wait).
struct Locked {
  Job job;
  std::optional<LeaseRecord> lease;
  // What this transaction did to it: whether the row is to be written, and the first
  // sequence it numbered (0: none).
  bool changed = false;
  int64_t first = 0;
};
absl::StatusOr<std::map<std::string, Locked>> LockWithLeases(
    PgConnection& conn, const std::vector<std::string>& job_ids) {
  const PgParam ids = PgParam::Text(TextArray(job_ids));
  conn.Defer("SELECT 1 FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", {ids});
  // Each job's lease by its key, one lookup a job: as a join, a plan made while leases
  // was small hashed a scan of the whole table, and the table (rows written and deleted
  // with every run) had grown to 160 pages — 4x the work for every completion.
  auto rows = conn.Exec(
      "SELECT j.record, (SELECT l.record FROM leases l WHERE l.job_id = j.id) FROM jobs j "
      "WHERE j.id = ANY($1::text[])",
      {ids}, /*binary_results=*/true);
  if (!rows.ok()) return rows.status();
  std::map<std::string, Locked> locked;
  for (int i = 0; i < rows->rows(); ++i) {
    auto job = Parse<Job>(rows->Get(i, 0), "a job");
    if (!job.ok()) return job.status();
    Locked& entry = locked[job->id()];
    if (!rows->IsNull(i, 1)) {
      auto lease = Parse<LeaseRecord>(rows->Get(i, 1), "a lease");
      if (!lease.ok()) return lease.status();
      entry.lease = *std::move(lease);
    }
    entry.job = *std::move(job);
  }
  return locked;
}

// The locked job `lease_id` holds; FAILED_PRECONDITION if the lease no longer holds it.
absl::StatusOr<Locked*> HeldBy(std::map<std::string, Locked>& locked, const std::string& job_id,
                               const std::string& lease_id) {
  auto it = locked.find(job_id);
  if (it == locked.end() || !it->second.lease || it->second.lease->lease_id() != lease_id) {
    return LeaseNotHeld(lease_id, job_id);
  }
  return &it->second;
}

// Ends the held lease of a locked job (deferred).
void DropLease(PgConnection& conn, const std::string& job_id, Locked& held) {
  conn.Defer("DELETE FROM leases WHERE job_id = $1", {PgParam::Text(job_id)});
  held.lease.reset();
}

// The job `lease_id` holds, its row locked (every change takes it first), and the lease.
// FAILED_PRECONDITION if the lease no longer holds the job.
absl::StatusOr<std::pair<Job, LeaseRecord>> LockLeased(PgConnection& conn,
                                                       const std::string& job_id,
                                                       const std::string& lease_id) {
  auto locked = LockWithLeases(conn, {job_id});
  if (!locked.ok()) return locked.status();
  auto held = HeldBy(*locked, job_id, lease_id);
  if (!held.ok()) return held.status();
  LeaseRecord lease = *(*held)->lease;
  return std::make_pair(std::move((*held)->job), std::move(lease));
}

}  // namespace

namespace {

// A claim's lanes, by (type, tenant, key): the index of the last job it took from each in
// its order, and a rate-bound lane's bucket after its starts.
struct Served {
  int last = 0;
  std::optional<double> tokens;
};
using ServedLanes = std::map<std::tuple<std::string, std::string, std::string>, Served>;

KeyLimit KeyLimitOf(const PgStore::ClaimOptions& options, const std::string& type) {
  if (options.key_limits == nullptr) return {};
  auto it = options.key_limits->find(type);
  return it == options.key_limits->end() ? KeyLimit{} : it->second;
}

// Notes when the claim's lanes were served (deferred, with the COMMIT). Every claim of a
// busy queue serves the same few lanes, so their rows must not become a lock the claims
// queue on: a lane's row is written only if no other claim holds it — one that does is
// serving it now as well — and is made, if new, without waiting on anyone. A rate-bound
// lane's bucket is always written: claims of its type hold the type's lock anyway. Without
// `turns` (the claim saw one lane) only buckets are written.
void NoteServed(PgConnection& conn, const ServedLanes& served, int64_t now_ms, bool turns) {
  struct Columns {  // as unnest() takes them
    std::vector<std::string> types, tenants, keys, last, tokens;
  } lanes, buckets;
  for (const auto& [lane, how] : served) {
    Columns& c = how.tokens ? buckets : lanes;
    c.types.push_back(std::get<0>(lane));
    c.tenants.push_back(std::get<1>(lane));
    c.keys.push_back(std::get<2>(lane));
    c.last.push_back(absl::StrCat(how.last));
    if (how.tokens) c.tokens.push_back(absl::StrCat(*how.tokens));
  }
  if (turns && !lanes.types.empty()) {
    conn.Defer(
        // One number from the sequence for the claim, and the lanes in the order of their
        // last job in it (a claim takes at most 1,000 jobs).
        "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])"
        "  AS u(type, tenant, ckey, last)),"
        " claim AS (SELECT nextval('lane_served') * 1000 AS base),"
        " made AS (INSERT INTO lanes (type, tenant, concurrency_key, served)"
        "  SELECT type, tenant, ckey, claim.base + last FROM u, claim WHERE NOT EXISTS ("
        "   SELECT 1 FROM lanes l WHERE l.type = u.type AND l.tenant = u.tenant"
        "   AND l.concurrency_key = u.ckey) ON CONFLICT DO NOTHING)"
        " UPDATE lanes l SET served = claim.base + p.last FROM claim, (SELECT s.type, s.tenant,"
        "  s.concurrency_key, u.last FROM lanes s JOIN u ON s.type = u.type"
        "  AND s.tenant = u.tenant AND s.concurrency_key = u.ckey FOR UPDATE OF s SKIP LOCKED) p"
        " WHERE l.type = p.type AND l.tenant = p.tenant AND l.concurrency_key = p.concurrency_key",
        {PgParam::Text(TextArray(lanes.types)), PgParam::Text(TextArray(lanes.tenants)),
         PgParam::Text(TextArray(lanes.keys)), PgParam::Text(TextArray(lanes.last))});
  }
  if (!buckets.types.empty()) {
    conn.Defer(
        "INSERT INTO lanes (type, tenant, concurrency_key, served, tokens, tokens_ms)"
        " SELECT u.type, u.tenant, u.ckey, (SELECT nextval('lane_served') * 1000) + u.last,"
        "  u.tokens, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $6::int[])"
        "  AS u(type, tenant, ckey, tokens, last)"
        " ON CONFLICT (type, tenant, concurrency_key) DO UPDATE SET served = EXCLUDED.served,"
        " tokens = EXCLUDED.tokens, tokens_ms = EXCLUDED.tokens_ms",
        {PgParam::Text(TextArray(buckets.types)), PgParam::Text(TextArray(buckets.tenants)),
         PgParam::Text(TextArray(buckets.keys)), PgParam::Text(TextArray(buckets.tokens)),
         PgParam::Int(now_ms), PgParam::Text(TextArray(buckets.last))});
  }
}

}  // namespace

absl::StatusOr<std::vector<PgStore::Claimed>> PgStore::ClaimLeased(
    const std::vector<std::string>& types, int64_t now_ms, int limit, const Start& start) {
  return ClaimLeased(types, now_ms, limit, start, ClaimOptions());
}

absl::StatusOr<std::vector<PgStore::Claimed>> PgStore::ClaimLeased(
    const std::vector<std::string>& types, int64_t now_ms, int limit, const Start& start,
    const ClaimOptions& options) {
  std::vector<Claimed> claimed;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    claimed.clear();
    std::map<std::string, int64_t> room;  // of the capped types asked for
    std::vector<std::string> open;        // the types with room
    std::vector<std::string> concurrency, rate;  // their key limits, as open has them
    for (const std::string& type : types) {
      int cap = 0;
      if (options.max_running != nullptr) {
        if (auto it = options.max_running->find(type); it != options.max_running->end()) {
          cap = it->second;
        }
      }
      const bool capped = cap > 0;
      const KeyLimit key_limit = KeyLimitOf(options, type);
      if (capped || key_limit.limited()) {
        // The counts are statements of their own: in READ COMMITTED each statement sees
        // what committed before it began, and these must begin after the lock is taken.
        if (absl::Status s = conn.Exec("SELECT pg_advisory_xact_lock(hashtext('jobstream type ' "
                                       "|| $1))",
                                       {PgParam::Text(type)})
                                 .status();
            !s.ok()) {
          return s;
        }
      }
      if (capped) {
        auto counted = conn.Exec("SELECT count(*) FROM jobs WHERE state = 2 AND type = $1",
                                 {PgParam::Text(type)});
        if (!counted.ok()) return counted.status();
        auto running = counted->GetInt64(0, 0);
        if (!running.ok()) return running.status();
        if (*running >= cap) continue;
        room[type] = cap - *running;
      }
      open.push_back(type);
      concurrency.push_back(absl::StrCat(key_limit.concurrency));
      rate.push_back(absl::StrCat(key_limit.rate));
    }
    if (open.empty()) return absl::OkStatus();
    // Lanes take turns, as the RocksDB queue's do: a lane per type, tenant and
    // concurrency key, found by skipping through jobs_queue_by_key (a few lookups a lane,
    // however deep its queue). Each lane offers its first jobs — no more than its key's
    // limits leave room for, nor than its share of `limit`. At the best priority, each
    // tenant's first goes first, then each one's second, and so on, the tenant served least
    // recently first; within a tenant its keys take turns alike.
    const std::string only_tenant =
        options.tenant ? " AND tenant = $4::text" : " AND $4::text IS NULL";
    // jobs_queue_by_key yields lanes and each lane's jobs in the order wanted, so no sort of
    // queued jobs is ever needed; but statistics gathered while the queue was nearly empty
    // (autovacuum's last look) have led the planner to sort a type's whole queue instead,
    // several times slower once thousands are queued. Penalising sorts for this statement
    // keeps the index-ordered plan whatever the statistics say. The penalty makes the plan
    // look costly enough for JIT compilation (500 ms a claim): off too. For this
    // transaction only, so it holds through pgbouncer as well. (A generic plan, made once
    // per connection, would save the 1.1 ms planning takes, but one made while the table
    // was young joined the claimed rows by a scan of the whole queue: left to each call.)
    conn.Defer("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)");
    auto rows = conn.Exec(
        absl::StrCat(
            "WITH RECURSIVE ty AS (SELECT * FROM unnest($1::text[], $5::int[], $6::float8[]) "
            "  AS t(type, conc, rate) WHERE t.type NOT IN (SELECT type FROM paused_types)),"
            " lanes_queued(type, tenant, ckey) AS ("
            "  SELECT ty.type, f.tenant, f.concurrency_key FROM ty CROSS JOIN LATERAL ("
            "    SELECT tenant, concurrency_key FROM jobs WHERE state = 1 AND type = ty.type",
            only_tenant,
            "    ORDER BY tenant, concurrency_key LIMIT 1) f"
            "  UNION ALL"
            "  SELECT l.type, f.tenant, f.concurrency_key FROM lanes_queued l CROSS JOIN LATERAL ("
            "    SELECT tenant, concurrency_key FROM jobs WHERE state = 1 AND type = l.type"
            "    AND (tenant, concurrency_key) > (l.tenant, l.ckey)",
            only_tenant,
            "    ORDER BY tenant, concurrency_key LIMIT 1) f),"
            " running AS (SELECT type, tenant, concurrency_key AS ckey, count(*) AS n FROM jobs"
            "  WHERE state = 2 AND type IN (SELECT type FROM ty WHERE conc > 0) GROUP BY 1, 2, 3),"
            " room AS (SELECT l.type, l.tenant, l.ckey, COALESCE(r.n, 0) AS running, s.served,"
            "  max(s.served) OVER (PARTITION BY l.tenant) AS tenant_served,"
            "  LEAST(COALESCE(s.tokens + ($2 - s.tokens_ms) * ty.rate / 1000.0, 1e9),"
            "        GREATEST(ty.rate, 1)) AS tokens,"
            "  ty.conc, ty.rate FROM lanes_queued l JOIN ty ON ty.type = l.type"
            "  LEFT JOIN running r ON r.type = l.type AND r.tenant = l.tenant AND r.ckey = l.ckey"
            "  LEFT JOIN lanes s ON s.type = l.type AND s.tenant = l.tenant"
            "   AND s.concurrency_key = l.ckey),"
            " heads AS (SELECT h.id, h.tenant, h.priority, h.ready_ms, ro.served, ro.tenant_served,"
            "  ro.tokens, row_number() OVER (PARTITION BY ro.type, ro.tenant, ro.ckey, h.priority"
            "   ORDER BY h.ready_ms, h.id) AS key_turn"
            "  FROM room ro CROSS JOIN LATERAL ("
            "   SELECT id, tenant, priority, ready_ms FROM jobs WHERE state = 1"
            "   AND type = ro.type AND tenant = ro.tenant AND concurrency_key = ro.ckey"
            "   AND ready_ms <= $2 ORDER BY priority DESC, ready_ms, id"
            "   LIMIT LEAST(CASE WHEN ro.conc > 0 THEN ro.conc - ro.running ELSE $3 END,"
            "               CASE WHEN ro.rate > 0 THEN floor(ro.tokens)::bigint ELSE $3 END,"
            "               $3 / (SELECT count(*) FROM lanes_queued) + 1)) h),"
            " turns AS (SELECT *, row_number() OVER (PARTITION BY tenant, priority"
            "  ORDER BY key_turn, served NULLS FIRST, ready_ms, id) AS turn FROM heads)"
            " SELECT j.record, j.params, h.tokens::text,"
            "  (SELECT count(*) FROM lanes_queued)::text FROM turns h JOIN jobs j ON j.id = h.id"
            " WHERE j.state = 1"
            " ORDER BY h.priority DESC, h.turn, h.tenant_served NULLS FIRST, h.ready_ms, h.id"
            " LIMIT $3 FOR UPDATE OF j SKIP LOCKED"),
        {PgParam::Text(TextArray(open)), PgParam::Int(now_ms), PgParam::Int(limit),
         options.tenant ? PgParam::Text(*options.tenant) : PgParam::Null(),
         PgParam::Text(TextArray(concurrency)),
         PgParam::Text(TextArray(rate))},
        /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    conn.Defer("SELECT set_config('enable_sort', 'on', true)");  // for the writes that follow
    ServedLanes served;
    for (int i = 0; i < rows->rows(); ++i) {
      auto job = Parse<Job>(rows->Get(i, 0), "a queued job");
      if (!job.ok()) return job.status();
      if (auto capped = room.find(job->type()); capped != room.end()) {
        if (capped->second == 0) continue;  // its row lock ends with the transaction
        --capped->second;
      }
      Served& lane = served[std::make_tuple(job->type(), job->tenant(), job->concurrency_key())];
      lane.last = static_cast<int>(claimed.size());
      if (KeyLimitOf(options, job->type()).rate > 0) {
        if (!lane.tokens) {
          const absl::string_view tokens = rows->Get(i, 2);
          double read = 0;
          if (!absl::SimpleAtod(tokens, &read)) {
            return absl::InternalError(absl::StrCat("a key's tokens read back as ", tokens));
          }
          lane.tokens = read;
        }
        *lane.tokens -= 1;
      }
      Claimed one;
      auto params = ParamsAt(*rows, i, 1);
      if (!params.ok()) return params.status();
      one.params = *std::move(params);
      auto events = ChangeLocked(conn, *std::move(job), [&](Job& j, std::vector<JobEvent>& out) {
        auto lease = start(j, out, claimed.size());
        if (!lease.ok()) return lease.status();
        one.lease = *std::move(lease);
        return absl::OkStatus();
      });
      if (!events.ok()) return events.status();
      one.events = *std::move(events);
      const std::string& job_id = one.events.back().job_id();
      const LeaseRecord& lease = one.lease;
      conn.Defer("INSERT INTO leases (job_id, lease_id, deadline_ms, attempt_deadline_ms, "
                 "holder, record) VALUES ($1, $2, $3, $4, $5, $6)",
                 {PgParam::Text(job_id), PgParam::Text(lease.lease_id()),
                  PgParam::Int(lease.deadline_ms()),
                  lease.attempt_deadline_ms() != 0 ? PgParam::Int(lease.attempt_deadline_ms())
                                                   : PgParam::Null(),
                  PgParam::Text(lease.worker_id()), PgParam::Binary(lease.SerializeAsString())});
      claimed.push_back(std::move(one));
    }
    // With one lane queued there are no turns to keep (a busy queue of one tenant's jobs
    // without keys, say), so nothing to write but buckets.
    NoteServed(conn, served, now_ms, /*turns=*/rows->rows() > 0 && rows->Get(0, 3) != "1");
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return claimed;
}

absl::StatusOr<std::vector<JobEvent>> PgStore::ChangeLeased(const std::string& job_id,
                                                            const std::string& lease_id,
                                                            bool end_lease, const Change& change) {
  std::vector<LeasedChange> one(1);
  one[0] = {job_id, lease_id, end_lease, change};
  if (absl::Status s = ChangeLeasedBatch(one); !s.ok()) return s;
  return std::move(one[0].result);
}

namespace {

// The jobs a batch of changes locks.
template <typename Changes>
std::vector<std::string> JobIdsOf(const Changes& changes) {
  std::vector<std::string> job_ids;
  job_ids.reserve(changes.size());
  for (const auto& c : changes) job_ids.push_back(c.job_id);
  return job_ids;
}

// One change of a batch to a locked job: its events, the job noting what the transaction
// is to write of it. A change that fails deferred nothing.
absl::StatusOr<std::vector<JobEvent>> ApplyToLocked(PgConnection& conn, Locked& job,
                                                    const PgStore::Change& change) {
  std::vector<JobEvent> events;
  auto changed = ApplyLocked(conn, job.job, change, events);
  if (!changed.ok()) return changed.status();
  job.changed = job.changed || *changed;
  if (job.first == 0 && !events.empty()) job.first = events.front().sequence();
  return events;
}

// Each locked job's row and announcement once, whatever number of changes it had.
void WriteLockedJobs(PgConnection& conn, const std::map<std::string, Locked>& locked) {
  for (const auto& [job_id, job] : locked) {
    if (job.changed) WriteJob(conn, job.job);
    if (job.first != 0) Announce(conn, job_id, job.first, job.job.last_sequence());
  }
}

}  // namespace

absl::Status PgStore::ChangeLeasedBatch(std::vector<LeasedChange>& changes) {
  if (changes.empty()) return absl::OkStatus();
  const std::vector<std::string> job_ids = JobIdsOf(changes);
  return pool_.Transact([&](PgConnection& conn) -> absl::Status {
    auto locked = LockWithLeases(conn, job_ids);
    if (!locked.ok()) return locked.status();
    for (LeasedChange& c : changes) {
      auto held = HeldBy(*locked, c.job_id, c.lease_id);
      if (!held.ok()) {
        c.result = held.status();
        continue;
      }
      Locked& job = **held;
      auto events = ApplyToLocked(conn, job, c.change);
      if (!events.ok()) {
        c.result = events.status();
        continue;
      }
      if (c.end_lease) {
        DropLease(conn, c.job_id, job);
      } else if (c.renew_at_ms) {
        LeaseRecord& lease = *job.lease;
        if (c.renew_duration_ms > 0) lease.set_duration_ms(c.renew_duration_ms);
        lease.set_deadline_ms(*c.renew_at_ms + lease.duration_ms());
        conn.Defer("UPDATE leases SET deadline_ms = $2, record = $3 WHERE job_id = $1",
                   {PgParam::Text(c.job_id), PgParam::Int(lease.deadline_ms()),
                    PgParam::Binary(lease.SerializeAsString())});
        c.job = job.job;
        c.lease = lease;
      }
      c.result = *std::move(events);
    }
    WriteLockedJobs(conn, *locked);
    return absl::OkStatus();
  });
}

absl::Status PgStore::TransitionBatch(std::vector<BatchChange>& changes) {
  if (changes.empty()) return absl::OkStatus();
  const std::vector<std::string> job_ids = JobIdsOf(changes);
  return pool_.Transact([&](PgConnection& conn) -> absl::Status {
    auto locked = LockWithLeases(conn, job_ids);
    if (!locked.ok()) return locked.status();
    for (BatchChange& c : changes) {
      auto it = locked->find(c.job_id);
      c.result = it == locked->end()
                     ? absl::StatusOr<std::vector<JobEvent>>(
                           absl::NotFoundError(absl::StrCat("no job ", c.job_id)))
                     : ApplyToLocked(conn, it->second, c.change);
    }
    WriteLockedJobs(conn, *locked);
    return absl::OkStatus();
  });
}

absl::Status PgStore::WriteArtifactChunk(const std::string& job_id, uint64_t upload_id,
                                         uint32_t index, const std::string& data, int64_t now_ms) {
  return pool_.Use([&](PgConnection& conn) {
    return conn
        .Exec(
            "INSERT INTO artifact_chunks (job_id, upload_id, chunk, written_ms, data) "
            "VALUES ($1, $2, $3, $4, $5)",
            {PgParam::Text(job_id), PgParam::Int(static_cast<int64_t>(upload_id)),
             PgParam::Int(index), PgParam::Int(now_ms), PgParam::Binary(data)})
        .status();
  });
}

absl::StatusOr<std::vector<JobEvent>> PgStore::CommitArtifact(const std::string& job_id,
                                                              const std::string& lease_id,
                                                              const std::string& name,
                                                              const ArtifactRecord& record,
                                                              const Change& change) {
  std::vector<JobEvent> events;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    auto held = LockLeased(conn, job_id, lease_id);
    if (!held.ok()) return held.status();
    // The artifact this one replaces: its chunks go.
    auto old =
        conn.Exec("DELETE FROM artifacts WHERE job_id = $1 AND name = $2 RETURNING upload_id",
                  {PgParam::Text(job_id), PgParam::Text(name)});
    if (!old.ok()) return old.status();
    if (old->rows() > 0) {
      auto old_upload = old->GetInt64(0, 0);
      if (!old_upload.ok()) return old_upload.status();
      if (absl::Status s = conn.Exec("DELETE FROM artifact_chunks WHERE job_id = $1 "
                                     "AND upload_id = $2",
                                     {PgParam::Text(job_id), PgParam::Int(*old_upload)})
                               .status();
          !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = conn.Exec("INSERT INTO artifacts (job_id, name, upload_id, record) "
                                   "VALUES ($1, $2, $3, $4)",
                                   {PgParam::Text(job_id), PgParam::Text(name),
                                    PgParam::Int(static_cast<int64_t>(record.upload_id())),
                                    PgParam::Binary(record.SerializeAsString())})
                             .status();
        !s.ok()) {
      return s;
    }
    auto made = ChangeLocked(conn, std::move(held->first), change);
    if (!made.ok()) return made.status();
    events = *std::move(made);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return events;
}

absl::Status PgStore::RemoveUpload(const std::string& job_id, uint64_t upload_id) {
  return pool_.Use([&](PgConnection& conn) {
    return conn
        .Exec("DELETE FROM artifact_chunks WHERE job_id = $1 AND upload_id = $2",
              {PgParam::Text(job_id), PgParam::Int(static_cast<int64_t>(upload_id))})
        .status();
  });
}

absl::StatusOr<int64_t> PgStore::Affected(absl::string_view sql,
                                          const std::vector<PgParam>& params) {
  int64_t count = 0;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto done = conn.Exec(sql, params);
    if (!done.ok()) return done.status();
    count = done->affected();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return count;
}

absl::StatusOr<int64_t> PgStore::RemoveOrphanChunks(int64_t before_ms) {
  return Affected(
      "DELETE FROM artifact_chunks c WHERE written_ms < $1 AND NOT EXISTS (SELECT 1 FROM "
      "artifacts a WHERE a.job_id = c.job_id AND a.upload_id = c.upload_id)",
      {PgParam::Int(before_ms)});
}

absl::StatusOr<ArtifactRecord> PgStore::GetArtifactRecord(const std::string& job_id,
                                                          const std::string& name) const {
  auto found = FirstRecord<ArtifactRecord>(
      "SELECT record FROM artifacts WHERE job_id = $1 AND name = $2",
      {PgParam::Text(job_id), PgParam::Text(name)});
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " has no artifact \"", name, "\""));
  }
  return **std::move(found);
}

absl::Status PgStore::ReadArtifactChunk(const std::string& job_id, uint64_t upload_id,
                                        uint32_t index, std::string* data) const {
  return pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto row = conn.Exec(
        "SELECT data FROM artifact_chunks WHERE job_id = $1 AND upload_id = $2 AND chunk = $3",
        {PgParam::Text(job_id), PgParam::Int(static_cast<int64_t>(upload_id)), PgParam::Int(index)},
        /*binary_results=*/true);
    if (!row.ok()) return row.status();
    if (row->rows() == 0) {
      return absl::NotFoundError("the artifact was replaced or removed while being read");
    }
    *data = std::string(row->Get(0, 0));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<Job>> PgStore::GetLeasedJob(const std::string& job_id,
                                                         const std::string& lease_id) const {
  return FirstRecord<Job>(
      "SELECT j.record FROM jobs j JOIN leases l ON l.job_id = j.id "
      "WHERE j.id = $1 AND l.lease_id = $2",
      {PgParam::Text(job_id), PgParam::Text(lease_id)});
}

absl::StatusOr<int64_t> PgStore::ExtendLeases(const std::vector<std::string>& lease_ids,
                                              int64_t deadline_ms) {
  return Affected("UPDATE leases SET deadline_ms = $2 WHERE lease_id = ANY($1::text[])",
                  {PgParam::Text(TextArray(lease_ids)), PgParam::Int(deadline_ms)});
}

absl::StatusOr<std::vector<std::pair<std::string, LeaseRecord>>> PgStore::ExpiredLeases(
    int64_t now_ms, int limit) const {
  return SelectLeases(
      "SELECT job_id, record FROM leases WHERE deadline_ms < $1 OR attempt_deadline_ms < $1 "
      "ORDER BY least(deadline_ms, attempt_deadline_ms) LIMIT $2",
      {PgParam::Int(now_ms), PgParam::Int(limit)});
}

absl::StatusOr<std::vector<std::pair<std::string, LeaseRecord>>> PgStore::LeasesHeldBy(
    const std::string& holder) const {
  return SelectLeases("SELECT job_id, record FROM leases WHERE holder = $1",
                      {PgParam::Text(holder)});
}

absl::StatusOr<std::vector<std::pair<std::string, LeaseRecord>>> PgStore::SelectLeases(
    absl::string_view sql, const std::vector<PgParam>& params) const {
  std::vector<std::pair<std::string, LeaseRecord>> expired;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(sql, params, /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto lease = Parse<LeaseRecord>(rows->Get(i, 1), "a lease");
      if (!lease.ok()) return lease.status();
      expired.emplace_back(std::string(rows->Get(i, 0)), *std::move(lease));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return expired;
}

absl::StatusOr<Job> PgStore::GetJob(const std::string& job_id) const {
  auto job = FirstRecord<Job>("SELECT record FROM jobs WHERE id = $1", {PgParam::Text(job_id)});
  if (!job.ok()) return job.status();
  if (!job->has_value()) return NoSuchJob(job_id);
  return **std::move(job);
}

absl::StatusOr<Job> PgStore::GetJobWithParams(const std::string& job_id) const {
  absl::StatusOr<Job> job = NoSuchJob(job_id);
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto row = conn.Exec("SELECT record, params FROM jobs WHERE id = $1", {PgParam::Text(job_id)},
                         /*binary_results=*/true);
    if (!row.ok()) return row.status();
    if (row->rows() == 0) return absl::OkStatus();
    job = Parse<Job>(row->Get(0, 0), absl::StrCat("job ", job_id));
    auto params = ParamsAt(*row, 0, 1);
    if (!params.ok()) return params.status();
    if (job.ok()) *job->mutable_params() = *std::move(params);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return job;
}

absl::StatusOr<std::optional<Tombstone>> PgStore::GetTombstone(const std::string& job_id) const {
  std::optional<Tombstone> tombstone;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto row = conn.Exec("SELECT removed_ms, reason, tenant FROM tombstones WHERE job_id = $1",
                         {PgParam::Text(job_id)});
    if (!row.ok()) return row.status();
    if (row->rows() == 0) return absl::OkStatus();
    auto removed_ms = row->GetInt64(0, 0);
    if (!removed_ms.ok()) return removed_ms.status();
    tombstone = Tombstone{*removed_ms, std::string(row->Get(0, 1)), std::string(row->Get(0, 2))};
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return tombstone;
}

absl::StatusOr<std::vector<CommittedEventPtr>> PgStore::ReadCommittedEvents(
    const std::string& job_id, int64_t after, int64_t until, size_t limit) const {
  std::vector<CommittedEventPtr> events;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(
        "SELECT event FROM events WHERE job_id = $1 AND sequence > $2 AND sequence <= $3 "
        "ORDER BY sequence LIMIT $4",
        {PgParam::Text(job_id), PgParam::Int(after), PgParam::Int(until),
         PgParam::Int(static_cast<int64_t>(limit))},
        /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto committed = std::make_shared<CommittedEvent>();
      committed->wire = std::string(rows->Get(i, 0));  // as stored: the wire form
      if (!committed->event.ParseFromString(committed->wire)) {
        return absl::DataLossError(absl::StrCat("an event of job ", job_id, " is not valid"));
      }
      events.push_back(std::move(committed));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return events;
}

absl::StatusOr<std::vector<CommittedEventPtr>> PgStore::ReadEventRanges(
    const std::vector<EventRange>& ranges) const {
  std::vector<std::string> ids;
  std::string firsts = "{", lasts = "{";
  for (size_t i = 0; i < ranges.size(); ++i) {
    ids.push_back(ranges[i].job_id);
    absl::StrAppend(&firsts, i > 0 ? "," : "", ranges[i].first);
    absl::StrAppend(&lasts, i > 0 ? "," : "", ranges[i].last);
  }
  firsts += "}";
  lasts += "}";
  std::vector<CommittedEventPtr> events;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(
        // Each range through the primary key, whatever the planner believes of the
        // table: a plain join, planned on the statistics of a young, fast-growing events
        // table, hashed all of it for every batch.
        "SELECT e.event FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY "
        "AS r(job, first, last, ord) CROSS JOIN LATERAL (SELECT event, sequence FROM events "
        "WHERE job_id = r.job AND sequence BETWEEN r.first AND r.last ORDER BY sequence "
        "LIMIT r.last - r.first + 1) e ORDER BY r.ord, e.sequence",
        {PgParam::Text(TextArray(ids)), PgParam::Text(firsts), PgParam::Text(lasts)},
        /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto committed = std::make_shared<CommittedEvent>();
      committed->wire = std::string(rows->Get(i, 0));
      if (!committed->event.ParseFromString(committed->wire)) {
        return absl::DataLossError("a stored event is not valid");
      }
      events.push_back(std::move(committed));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return events;
}

absl::Status PgStore::VisitQueuedNewestFirst(size_t max_read,
                                             const std::function<bool(const Job&)>& visit) const {
  return VisitRecords<Job>(
      "SELECT record FROM jobs WHERE state = 1 ORDER BY create_ms DESC, id DESC LIMIT $1",
      {PgParam::Int(static_cast<int64_t>(max_read))}, [&](Job job) { return visit(job); });
}

absl::Status PgStore::VisitJobsNewestFirst(const JobQuery& query,
                                           const std::function<bool(const Job&)>& visit) const {
  std::string states = "{";
  for (size_t i = 0; i < query.states.size(); ++i) {
    absl::StrAppend(&states, i > 0 ? "," : "", query.states[i]);
  }
  states += "}";
  return VisitRecords<Job>(
      "SELECT record FROM jobs WHERE (cardinality($1::smallint[]) = 0 OR state = ANY($1)) "
      "AND ($2 = '' OR type = $2) AND ($3::text IS NULL OR tenant = $3) "
      "AND (create_ms, id) < ($4, $5) ORDER BY create_ms DESC, id DESC LIMIT $6",
      {PgParam::Text(states), PgParam::Text(query.type),
       query.tenant ? PgParam::Text(*query.tenant) : PgParam::Null(), PgParam::Int(query.before_ms),
       PgParam::Text(query.before_id), PgParam::Int(query.limit)},
      [&](Job job) { return visit(job); });
}

namespace {

// Removes the jobs `gone` selects (a query of ids, locked) with what hangs off them, and
// leaves their tombstones. $1: removed_ms, $2: reason; the rest are the query's.
absl::StatusOr<int64_t> RemoveJobs(PgConnection& conn, absl::string_view gone,
                                   std::vector<PgParam> params) {
  auto removed = conn.Exec(
      absl::StrCat("WITH gone AS (DELETE FROM jobs WHERE id IN (", gone,
                   ") RETURNING id, tenant), "
                   "chunks AS (DELETE FROM artifact_chunks WHERE job_id IN (SELECT id FROM gone)) "
                   "INSERT INTO tombstones (job_id, tenant, removed_ms, reason) "
                   "SELECT id, tenant, $1, $2 FROM gone ON CONFLICT (job_id) DO UPDATE "
                   "SET removed_ms = EXCLUDED.removed_ms, reason = EXCLUDED.reason"),
      params);
  if (!removed.ok()) return removed.status();
  return removed->affected();
}

}  // namespace

absl::Status PgStore::RemoveJob(const std::string& job_id,
                                const std::function<absl::Status(const Job&)>& check,
                                absl::string_view reason, int64_t now_ms) {
  return pool_.Transact([&](PgConnection& conn) -> absl::Status {
    auto job = LockJob(conn, job_id);
    if (!job.ok()) return job.status();
    if (absl::Status s = check(*job); !s.ok()) return s;
    return RemoveJobs(
               conn, "$3",
               {PgParam::Int(now_ms), PgParam::Text(std::string(reason)), PgParam::Text(job_id)})
        .status();
  });
}

absl::StatusOr<int64_t> PgStore::RemoveFinished(int64_t ended_before_ms, absl::string_view reason,
                                                int64_t now_ms, int limit) {
  int64_t count = 0;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    // Rows a live change holds are skipped: they are not finished, or are changing.
    auto removed = RemoveJobs(conn,
                              "SELECT id FROM jobs WHERE end_ms < $3 ORDER BY end_ms "
                              "LIMIT $4 FOR UPDATE SKIP LOCKED",
                              {PgParam::Int(now_ms), PgParam::Text(std::string(reason)),
                               PgParam::Int(ended_before_ms), PgParam::Int(limit)});
    if (!removed.ok()) return removed.status();
    count = *removed;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return count;
}

absl::StatusOr<int64_t> PgStore::RemoveTombstones(int64_t before_ms) {
  return Affected("DELETE FROM tombstones WHERE removed_ms < $1", {PgParam::Int(before_ms)});
}

absl::StatusOr<std::optional<Job>> PgStore::FindRequest(const std::string& tenant,
                                                        const std::string& request_id) const {
  return FirstRecord<Job>(
      "SELECT j.record FROM requests r JOIN jobs j ON j.id = r.job_id "
      "WHERE r.tenant = $1 AND r.request_id = $2",
      {PgParam::Text(tenant), PgParam::Text(request_id)});
}

absl::StatusOr<int64_t> PgStore::CountQueued(const std::string& tenant) const {
  absl::StatusOr<int64_t> count = absl::InternalError("no count");
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec("SELECT count(*) FROM jobs WHERE state = 1 AND tenant = $1",
                          {PgParam::Text(tenant)});
    if (!rows.ok()) return rows.status();
    count = rows->GetInt64(0, 0);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return count;
}

absl::StatusOr<std::map<std::string, PgStore::LiveCount>> PgStore::CountLive(
    int64_t now_ms) const {
  std::map<std::string, LiveCount> counts;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    // Both partial indexes (jobs_queue, jobs_running) cover it.
    auto rows = conn.Exec(
        "SELECT type, count(*) FILTER (WHERE state = 1), count(*) FILTER (WHERE state = 2), "
        "coalesce(min(ready_ms) FILTER (WHERE state = 1 AND ready_ms <= $1), 0) "
        "FROM jobs WHERE state IN (1, 2) GROUP BY type",
        {PgParam::Int(now_ms)});
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto queued = rows->GetInt64(i, 1);
      auto running = rows->GetInt64(i, 2);
      auto oldest = rows->GetInt64(i, 3);
      if (!queued.ok() || !running.ok() || !oldest.ok()) {
        return absl::InternalError("a count is not a number");
      }
      counts[std::string(rows->Get(i, 0))] = {*queued, *running, *oldest};
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return counts;
}

absl::Status PgStore::SetTypePause(const std::string& type,
                                   const std::optional<v1::TypePause>& pause) {
  return pool_.Use([&](PgConnection& conn) -> absl::Status {
    if (!pause) {
      return conn.Exec("DELETE FROM paused_types WHERE type = $1", {PgParam::Text(type)}).status();
    }
    return conn
        .Exec("INSERT INTO paused_types (type, record) VALUES ($1, $2) "
              "ON CONFLICT (type) DO UPDATE SET record = EXCLUDED.record",
              {PgParam::Text(type), PgParam::Binary(pause->SerializeAsString())})
        .status();
  });
}

absl::StatusOr<std::map<std::string, v1::TypePause>> PgStore::PausedTypes() const {
  std::map<std::string, v1::TypePause> paused;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec("SELECT type, record FROM paused_types", {}, /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto pause = Parse<v1::TypePause>(rows->Get(i, 1), "a type's pause");
      if (!pause.ok()) return pause.status();
      paused[std::string(rows->Get(i, 0))] = *std::move(pause);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return paused;
}

absl::Status PgStore::VisitJobs(const std::vector<std::string>& job_ids,
                                const std::function<void(const Job&)>& visit) const {
  return VisitRecords<Job>("SELECT record FROM jobs WHERE id = ANY($1::text[])",
                           {PgParam::Text(TextArray(job_ids))}, [&](Job job) {
                             visit(job);
                             return true;
                           });
}

absl::Status PgStore::VisitJobsIn(Job::State state,
                                  const std::function<void(const Job&)>& visit) const {
  return VisitRecords<Job>("SELECT record FROM jobs WHERE state = $1", {PgParam::Int(state)},
                           [&](Job job) {
                             visit(job);
                             return true;
                           });
}

// ---------------------------------------------------------------------------------------
// Webhook deliveries

absl::StatusOr<std::vector<PgStore::PendingDelivery>> PgStore::PendingDeliveries(int limit) const {
  std::vector<PendingDelivery> pending;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(
        "SELECT job_id, sequence, due_ms FROM webhook_deliveries WHERE due_ms IS NOT NULL "
        "ORDER BY due_ms LIMIT $1",
        {PgParam::Int(limit)});
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      auto sequence = rows->GetInt64(i, 1);
      auto due = rows->GetInt64(i, 2);
      if (!sequence.ok()) return sequence.status();
      if (!due.ok()) return due.status();
      pending.push_back({std::string(rows->Get(i, 0)), *sequence, *due});
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return pending;
}

absl::StatusOr<std::optional<PgStore::TakenDelivery>> PgStore::TakeDelivery(
    const std::string& job_id, int64_t sequence, int64_t now_ms, int64_t hold_until_ms) {
  std::optional<TakenDelivery> taken;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    // SKIP LOCKED: a server taking it at this moment has it; this one goes on.
    auto rows = conn.Exec(
        "WITH t AS (UPDATE webhook_deliveries SET due_ms = $4 WHERE (job_id, sequence) IN "
        "(SELECT job_id, sequence FROM webhook_deliveries WHERE job_id = $1 AND sequence = $2 "
        "AND due_ms <= $3 FOR UPDATE SKIP LOCKED) RETURNING job_id, sequence, record) "
        "SELECT t.record, j.record, e.event FROM t JOIN jobs j ON j.id = t.job_id "
        "JOIN events e ON e.job_id = t.job_id AND e.sequence = t.sequence",
        {PgParam::Text(job_id), PgParam::Int(sequence), PgParam::Int(now_ms),
         PgParam::Int(hold_until_ms)},
        /*binary_results=*/true);
    if (!rows.ok()) return rows.status();
    if (rows->rows() == 0) return absl::OkStatus();
    auto record = Parse<v1::WebhookDelivery>(rows->Get(0, 0), "a webhook delivery");
    auto job = Parse<Job>(rows->Get(0, 1), absl::StrCat("job ", job_id));
    auto event = Parse<JobEvent>(rows->Get(0, 2), "an event");
    if (!record.ok()) return record.status();
    if (!job.ok()) return job.status();
    if (!event.ok()) return event.status();
    taken = TakenDelivery{*std::move(job), *std::move(event), *std::move(record)};
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return taken;
}

absl::StatusOr<bool> PgStore::RecordDelivery(const std::string& job_id, int64_t sequence,
                                             int64_t held_until_ms,
                                             const v1::WebhookDelivery& record,
                                             std::optional<int64_t> next_due_ms) {
  auto written = Affected(
      "UPDATE webhook_deliveries SET record = $4, due_ms = $5 "
      "WHERE job_id = $1 AND sequence = $2 AND due_ms = $3",
      {PgParam::Text(job_id), PgParam::Int(sequence), PgParam::Int(held_until_ms),
       PgParam::Binary(record.SerializeAsString()),
       next_due_ms ? PgParam::Int(*next_due_ms) : PgParam::Null()});
  if (!written.ok()) return written.status();
  return *written > 0;
}

absl::StatusOr<std::vector<v1::WebhookDelivery>> PgStore::ListDeliveries(
    const std::string& job_id) const {
  std::vector<v1::WebhookDelivery> deliveries;
  absl::Status status = VisitRecords<v1::WebhookDelivery>(
      "SELECT record FROM webhook_deliveries WHERE job_id = $1 ORDER BY sequence",
      {PgParam::Text(job_id)}, [&](v1::WebhookDelivery d) {
        deliveries.push_back(std::move(d));
        return true;
      });
  if (!status.ok()) return status;
  return deliveries;
}

}  // namespace jobstream::storage::pg
