// PgStore's batches (jobs/batch.h decides): a batch in one transaction, and the counting
// of its jobs' ends on their parent, which the leading server does as the feed shows them
// (and, for any a crash left, each second). A batch_children row is a job whose end its
// parent has yet to count; counting removes it in the same transaction, so each end is
// counted once.
#include <map>

#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"
#include "server/storage/pg/pg_rows.h"
#include "server/storage/pg/pg_store.h"

namespace jobstream::storage::pg {

using namespace rows;  // NOLINT: the store's own helpers
using v1::Job;
using v1::JobEvent;

namespace {

// A batch's request_id lives in requests beside Submit's, apart from them: Submit's are
// printable ASCII, so none starts with 0x02.
std::string BatchRequestId(const std::string& request_id) {
  return request_id.empty() ? "" : absl::StrCat("\x02", request_id);
}

// Numbers a parent's events, writes them and the parent as of the last (deferred), and
// announces them.
void WriteParentEvents(PgConnection& conn, int64_t last_sequence, std::vector<JobEvent>& events,
                       std::vector<JobEvent>& written) {
  if (events.empty()) return;
  NumberAsOf(last_sequence, events);
  const Job& parent = events.back().status();
  WriteJob(conn, parent);
  InsertEvents(conn, parent, events);
  Announce(conn, parent.id(), events.front().sequence(), parent.last_sequence());
  for (JobEvent& e : events) written.push_back(std::move(e));
}

// A `then` job a move made: inserted with its parent's write, to be counted in its turn.
absl::Status InsertThen(PgConnection& conn, std::optional<PgStore::NewJob>& then,
                        const std::string& parent_id) {
  if (!then) return absl::OkStatus();
  std::vector<PgStore::NewJob> one = {*std::move(then)};
  if (absl::Status s = InsertJobsOn(conn, one); !s.ok()) return s;
  conn.Defer("INSERT INTO batch_children (child_id, parent_id) VALUES ($1, $2)",
             {PgParam::Text(one[0].job.id()), PgParam::Text(parent_id)});
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PgStore::Inserted> PgStore::InsertBatch(const Job& parent,
                                                       const google::protobuf::Struct& params,
                                                       std::vector<JobEvent> parent_events,
                                                       std::vector<NewJob>& children) {
  Inserted out;
  std::vector<std::string> child_ids;
  for (const NewJob& child : children) child_ids.push_back(child.job.id());
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    Job keyed = parent;
    keyed.set_request_id(BatchRequestId(parent.request_id()));
    auto twin = TakeRequest(conn, keyed);
    if (!twin.ok()) return twin.status();
    if (twin->has_value()) {
      out = {**std::move(twin), false};
      return absl::OkStatus();
    }
    NumberAsOf(0, parent_events);
    const Job& stored = parent_events.back().status();
    // The row first: the events and the children's rows refer to it.
    if (absl::Status s = InsertJobRow(conn, stored, params); !s.ok()) return s;
    InsertEvents(conn, stored, parent_events);
    Announce(conn, stored.id(), 1, stored.last_sequence());
    if (auto s = conn.Exec("INSERT INTO batches (parent_id, child_ids) VALUES ($1, $2::text[])",
                           {PgParam::Text(stored.id()), PgParam::Text(TextArray(child_ids))});
        !s.ok()) {
      return s.status();
    }
    for (size_t from = 0; from < children.size(); from += kMaxInsertedPerStatement) {
      const size_t to = std::min(children.size(), from + kMaxInsertedPerStatement);
      std::vector<NewJob> part(std::make_move_iterator(children.begin() + from),
                               std::make_move_iterator(children.begin() + to));
      if (absl::Status s = InsertJobsOn(conn, part); !s.ok()) return s;
      std::move(part.begin(), part.end(), children.begin() + from);
    }
    conn.Defer("INSERT INTO batch_children (child_id, parent_id) SELECT unnest($1::text[]), $2",
               {PgParam::Text(TextArray(child_ids)), PgParam::Text(stored.id())});
    out = {stored, true};
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<std::string>> PgStore::BatchChildren(const std::string& parent_id) const {
  std::vector<std::string> ids;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec("SELECT unnest(child_ids) FROM batches WHERE parent_id = $1",
                          {PgParam::Text(parent_id)});
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) ids.emplace_back(rows->Get(i, 0));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return ids;
}

absl::StatusOr<std::vector<JobEvent>> PgStore::CountChildren(const std::vector<std::string>& ended,
                                                            const MoveParent& move) {
  std::vector<JobEvent> written;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    written.clear();
    auto found = conn.Exec(
        "SELECT b.parent_id, j.record FROM batch_children b JOIN jobs j ON j.id = b.child_id "
        "WHERE b.child_id = ANY($1::text[]) AND j.end_ms IS NOT NULL ORDER BY j.end_ms, j.id",
        {PgParam::Text(TextArray(ended))}, /*binary_results=*/true);
    if (!found.ok()) return found.status();
    if (found->rows() == 0) return absl::OkStatus();
    std::map<std::string, std::vector<Job>> by_parent;  // in id order: lock order
    std::vector<std::string> counted;
    for (int i = 0; i < found->rows(); ++i) {
      auto child = Parse<Job>(found->Get(i, 1), "a job");
      if (!child.ok()) return child.status();
      counted.push_back(child->id());
      by_parent[std::string(found->Get(i, 0))].push_back(*std::move(child));
    }
    std::vector<std::string> parent_ids;
    for (const auto& [id, unused] : by_parent) parent_ids.push_back(id);
    auto parents = conn.Exec(
        "SELECT record, params FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        {PgParam::Text(TextArray(parent_ids))}, /*binary_results=*/true);
    if (!parents.ok()) return parents.status();
    for (int i = 0; i < parents->rows(); ++i) {
      auto parent = Parse<Job>(parents->Get(i, 0), "a job");
      if (!parent.ok()) return parent.status();
      auto params = ParamsAt(*parents, i, 1);
      if (!params.ok()) return params.status();
      std::vector<const Job*> ends;
      for (const Job& child : by_parent[parent->id()]) ends.push_back(&child);
      auto moved = move(*parent, *params, ends);
      if (!moved.ok()) return moved.status();
      WriteParentEvents(conn, parent->last_sequence(), moved->events, written);
      if (absl::Status s = InsertThen(conn, moved->then, parent->id()); !s.ok()) return s;
    }
    conn.Defer("DELETE FROM batch_children WHERE child_id = ANY($1::text[])",
               {PgParam::Text(TextArray(counted))});
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return written;
}

absl::StatusOr<std::vector<std::string>> PgStore::EndedChildren(int limit,
                                                                 absl::Time ended_before) const {
  std::vector<std::string> ids;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    auto rows = conn.Exec(
        "SELECT b.child_id FROM batch_children b JOIN jobs j ON j.id = b.child_id "
        "WHERE j.end_ms < $2 LIMIT $1",
        {PgParam::Int(limit), PgParam::Int(absl::ToUnixMillis(ended_before))});
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) ids.emplace_back(rows->Get(i, 0));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return ids;
}

absl::StatusOr<std::vector<JobEvent>> PgStore::CancelBatch(const std::string& parent_id,
                                                          const Change& child,
                                                          const MoveParent& move) {
  std::vector<JobEvent> written;
  absl::Status status = pool_.Transact([&](PgConnection& conn) -> absl::Status {
    written.clear();
    auto parent = LockJob(conn, parent_id);
    if (!parent.ok()) return parent.status();
    auto live = conn.Exec(
        "SELECT j.record FROM batch_children b JOIN jobs j ON j.id = b.child_id "
        "WHERE b.parent_id = $1 AND j.end_ms IS NULL ORDER BY j.id FOR UPDATE OF j",
        {PgParam::Text(parent_id)}, /*binary_results=*/true);
    if (!live.ok()) return live.status();
    std::vector<Job> ended;
    for (int i = 0; i < live->rows(); ++i) {
      auto job = Parse<Job>(live->Get(i, 0), "a job");
      if (!job.ok()) return job.status();
      auto events = ChangeLocked(conn, *job, child);
      if (!events.ok()) return events.status();
      if (!events->empty() && v1::IsFinished(events->back().status().state())) {
        ended.push_back(events->back().status());
      }
      for (JobEvent& e : *events) written.push_back(std::move(e));
    }
    std::vector<const Job*> ends;
    std::vector<std::string> counted;
    for (const Job& job : ended) {
      ends.push_back(&job);
      counted.push_back(job.id());
    }
    auto moved = move(*parent, google::protobuf::Struct(), ends);
    if (!moved.ok()) return moved.status();
    WriteParentEvents(conn, parent->last_sequence(), moved->events, written);
    if (!counted.empty()) {
      conn.Defer("DELETE FROM batch_children WHERE child_id = ANY($1::text[])",
                 {PgParam::Text(TextArray(counted))});
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return written;
}

}  // namespace jobstream::storage::pg
