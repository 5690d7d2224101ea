// How PgStore reads and writes job rows, inside a caller's transaction: shared by the
// store's files (pg_store.cc, pg_batches.cc), not part of its interface.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/storage/pg/connection.h"
#include "server/storage/pg/pg_store.h"

namespace jobstream::storage::pg::rows {

// A text[] literal: each element quoted, so any name survives.
std::string TextArray(const std::vector<std::string>& items);

template <typename Message>
absl::StatusOr<Message> Parse(absl::string_view bytes, absl::string_view what) {
  Message message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat(what, " is not a valid record"));
  }
  return message;
}

absl::Status NoSuchJob(const std::string& job_id);
// The job's row, locked for this transaction.
absl::StatusOr<v1::Job> LockJob(PgConnection& conn, const std::string& job_id);
// Numbers `events` after the job's last sequence; each carries the job as changed.
void Number(v1::Job& job, std::vector<v1::JobEvent>& events);
// Numbers events that each carry their job as of themselves (InsertWaitingJob's, a
// batch's parent's), after `last_sequence`.
void NumberAsOf(int64_t last_sequence, std::vector<v1::JobEvent>& events);
// Writes the events (and the webhook deliveries they owe), deferred to the COMMIT.
void InsertEvents(PgConnection& conn, const v1::Job& job, const std::vector<v1::JobEvent>& events);
// Announces a job's events first..last to every server's feed, with the COMMIT.
void Announce(PgConnection& conn, const std::string& job_id, int64_t first, int64_t last);
// Applies `change` to the locked `job` and writes the job and its events (nothing if the
// change left it as it was).
absl::StatusOr<std::vector<v1::JobEvent>> ChangeLocked(PgConnection& conn, v1::Job job,
                                                       const PgStore::Change& change);
// Writes the job's row (deferred).
void WriteJob(PgConnection& conn, const v1::Job& job);
// Inserts a new job's row (numbered: its last_sequence is its events').
absl::Status InsertJobRow(PgConnection& conn, const v1::Job& job,
                          const google::protobuf::Struct& params);
// The params column (NULL for none).
absl::StatusOr<google::protobuf::Struct> ParamsAt(const PgResult& rows, int row, int col);
// A new job's request_id, taken: nullopt, or the twin that has it.
absl::StatusOr<std::optional<v1::Job>> TakeRequest(PgConnection& conn, const v1::Job& job);
// Many new jobs with their CREATED events, in one statement on `conn` (numbered on
// success). At most kMaxInsertedPerStatement at a time: PostgreSQL takes 65,535 parameters
// (each job takes 15, and 2 more with a webhook that wants "created").
inline constexpr size_t kMaxInsertedPerStatement = 3500;
absl::Status InsertJobsOn(PgConnection& conn, std::vector<PgStore::NewJob>& jobs);

}  // namespace jobstream::storage::pg::rows
