// How a job changes as an attempt starts, reports and ends: decided here, on the job
// record alone, so that every store (RocksDB's JobManager, PostgreSQL's) moves jobs the
// same way. The callers write the result and its event.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/job_types.h"
#include "server/storage/records.pb.h"
#include "server/webhooks/webhook_policy.h"

namespace jobstream::jobs {

// How an attempt ended.
struct AttemptEnd {
  enum Kind { kSucceeded, kFailed, kRequeue } kind;
  explicit AttemptEnd(Kind k) : kind(k) {}
  google::protobuf::Value result;    // kSucceeded
  absl::Status error;                // kFailed; kRequeue: why
  bool retryable = false;            // kFailed
  google::protobuf::Struct details;  // kFailed
};

// An event of `type` at `now`, for a store to number and fill in with its job.
v1::JobEvent EventOf(v1::JobEvent::Type type, absl::Time now);

// A committed state change, by the server that wrote it: its log line (not for a step,
// progress or artifact) and its count in the metrics.
void RecordStateChange(const v1::JobEvent& event);

// Attempts ended by the server rather than by whoever ran them, each failed and
// retryable: a lease nobody renewed, an attempt past its type's timeout, an attempt
// running when its server stopped (`why`: "the server stopped").
AttemptEnd LeaseExpired(const storage::LeaseRecord& lease);
AttemptEnd AttemptTimedOut(const v1::Job& job, const JobType& type);
AttemptEnd Interrupted(const v1::Job& job, absl::string_view why);

// A QUEUED job cancelled on request (its CANCELLED event is the caller's to add).
void CancelQueued(v1::Job& job, absl::Time now);

// An operator's action on `job` at `now`, writing the event numbered `sequence` (0: none).
v1::OperatorAction ActionOf(absl::string_view action, const std::string& by,
                            const std::string& reason, absl::Time now, int64_t sequence);

// Records `action` (if any: an internal cancel has none) as the job's last, writing the
// event numbered `sequence`.
void Acted(v1::Job& job, v1::OperatorAction action, int64_t sequence);

// FAILED_PRECONDITION for a retry of a child whose batch still runs (its parent counted
// its end already, and would count the retry's again).
absl::Status BatchRunning(const v1::Job& job);

// RetryJob: FAILED_PRECONDITION unless `job` may run again — FAILED or CANCELLED, and no
// batch's parent (its children are retried instead). Whether a child's batch still runs
// is the store's to check.
absl::Status CheckRetry(const v1::Job& job);

// A FAILED or CANCELLED job QUEUED again, ready now, for a new series of attempts; its
// error stays as the cause (as a retry's does). Its RETRIED event is the caller's to add,
// numbered job.last_sequence() + 1, which `action` names.
void RetryEnded(v1::Job& job, const v1::OperatorAction& action, absl::Time now);

// The SubmitRequest that replays `job` (RetryJob as_new): its type, params (or `params`,
// if given), labels with jobstream/replay_of, priority, max_attempts, webhook and
// concurrency_key.
v1::SubmitRequest ReplayRequest(const v1::Job& job, const google::protobuf::Struct* params);
inline constexpr char kReplayOfLabel[] = "jobstream/replay_of";

// RESOURCE_EXHAUSTED for a Submit of `tenant`, whose `queued` jobs reached the limit.
absl::Status QueueFull(const std::string& tenant, int64_t queued);

// FAILED_PRECONDITION: "job <id> is <STATE>; <what>".
absl::Status StateError(const v1::Job& job, absl::string_view what);

// A new job (QUEUED, without params) of `tenant` from a valid request.
v1::Job NewJob(const v1::SubmitRequest& request, const JobType& type, const std::string& tenant,
               absl::Time now);

// A request's webhook against the server's policy: INVALID_ARGUMENT if it asks for one the
// server does not deliver (`policy` null or empty: none).
absl::Status CheckSubmitWebhook(const v1::SubmitRequest& request,
                                const webhooks::WebhookPolicy* policy);

// How an in-server handler's run of `job` ended: its outcome stands (a result over
// `max_result_bytes` fails it), unless the run was cut short — cancelled on request, timed
// out (retryable), or stopped with the server (requeued, not counted).
AttemptEnd EndOfRun(const v1::Job& job, const JobType& type,
                    absl::StatusOr<google::protobuf::Value> outcome, bool timed_out,
                    bool server_stopping, size_t max_result_bytes);

// A QUEUED job starts its next attempt (STARTED) on `worker_id`: the lease it runs under.
// `lease_id` empty: an in-server run, else a worker's, for `lease_duration` (zero: the
// type's).
storage::LeaseRecord StartJob(v1::Job& job, const JobType& type, absl::Time now,
                              const std::string& worker_id, const std::string& lease_id,
                              absl::Duration lease_duration);

// A RUNNING job's attempt ends as `end` says: SUCCEEDED, FAILED, CANCELLED (a cancel was
// asked for), or RETRYING back to QUEUED — after the type's backoff, or at once without
// counting the attempt for kRequeue. Returns the event; the job says whether it is QUEUED.
v1::JobEvent::Type EndJobAttempt(v1::Job& job, const JobType& type, const AttemptEnd& end,
                                 absl::Time now);

// Applies a progress report to `current`: STEP for a new step, PROGRESS if anything else
// moved (zero and empty mean "unchanged"), TYPE_UNSPECIFIED if nothing did. Text is cut
// to its limit, the fraction clamped to 0..1.
v1::JobEvent::Type ApplyProgress(v1::Progress& current, const v1::Progress& report);

// Cuts `s` to at most `max` bytes without splitting a UTF-8 character.
std::string TruncateUtf8(const std::string& s, size_t max);

inline constexpr size_t kMaxStep = 256;
inline constexpr size_t kMaxMessage = 4096;

}  // namespace jobstream::jobs
