// Batches (fan-out / fan-in): a parent job of type "jobstream.batch" and up to 10,000
// children made with it in one write. The parent is WAITING while they run; as each child
// ends, the parent records a CHILD event and its progress (children ended / total) in the
// same write as the child's end; once the last has ended, the batch's `then` job is made
// (and the parent waits for it, then ends as it ended) or, without one, the parent ends
// SUCCEEDED if every child did, else FAILED. Every decision about a parent is made here,
// on job records alone; a store only finds the parent and writes what these say.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/job_types.h"
#include "server/jobs/validation.h"
#include "server/webhooks/webhook_policy.h"

namespace jobstream::jobs {

inline constexpr int kMaxBatchChildren = 10000;
// The parent's type (no declared type may have it: names are checked elsewhere to start
// with a letter or digit and this one's "jobstream." prefix is reserved).
inline constexpr char kBatchType[] = "jobstream.batch";
// The label every child (and the `then` job) carries: the parent's id.
inline constexpr char kBatchLabel[] = "jobstream/batch";

// The whole request: 1..kMaxBatchChildren children, each a valid Submit without
// request_id, unique_key or depends_on (INVALID_ARGUMENT naming children[i] and the
// field), the same for `then`, the parent's labels and request_id.
absl::Status ValidateSubmitBatch(const v1::SubmitBatchRequest& request, const JobTypes& types,
                                 const Limits& limits, const webhooks::WebhookPolicy* policy,
                                 absl::Time now);

// A batch's jobs as created.
struct NewBatch {
  // WAITING for its children (its CREATED event shows it so; a WAITING event follows).
  v1::Job parent;
  // {"then": the `then` request as JSON}, or empty.
  google::protobuf::Struct parent_params;
  // QUEUED, each labelled with the parent's id and with parent_id set.
  std::vector<v1::Job> children;
};
NewBatch MakeBatch(const v1::SubmitBatchRequest& request, const JobTypes& types,
                   const std::string& tenant, absl::Time now);

// The `then` job's Submit and the job it makes (parent_id set, labelled as the children),
// checked against the types as they are now (a restart may have changed them).
struct ThenJob {
  v1::SubmitRequest request;
  v1::Job job;
};
absl::StatusOr<ThenJob> MakeThenJob(const v1::Job& parent,
                                    const google::protobuf::Struct& parent_params,
                                    const JobTypes& types, const Limits& limits, absl::Time now);

// `ended` (a job of the batch, as it ended) moves its parent: `emit` is called for each of
// the parent's events, in order, with the parent as of it — a CHILD event (with `child`),
// then, after the last child, WAITING for the `then` job `make_then` made (or FAILED if it
// could not be made) or the parent's end; or, for the `then` job, the parent's end.
// Nothing if `ended` is not (or no longer) the parent's to count. Returns whether the
// parent ended.
using EmitParentEvent = std::function<void(v1::JobEvent::Type type, const v1::ChildEnded* child)>;
using MakeThen = std::function<absl::StatusOr<v1::Job>()>;
bool MoveParent(v1::Job& parent, const v1::Job& ended, absl::Time now, const MakeThen& make_then,
                const EmitParentEvent& emit);

// A child cancelled because its parent was (its CANCELLED event is the caller's to add).
void CancelWithBatch(v1::Job& child, const std::string& parent_id, absl::Time now);

}  // namespace jobstream::jobs
