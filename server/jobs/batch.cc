#include "server/jobs/batch.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/ids.h"
#include "server/jobs/transitions.h"

namespace jobstream::jobs {
namespace {

using v1::Job;
using v1::JobEvent;

constexpr size_t kMaxChildSummary = 200;

// What a Submit of a batch's child or `then` job may not carry, by where it sits.
absl::Status ValidateMember(const v1::SubmitRequest& member, const std::string& where,
                            const JobTypes& types, const Limits& limits,
                            const webhooks::WebhookPolicy* policy, absl::Time now) {
  auto refuse = [&](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", field, ": ", why));
  };
  if (!member.request_id().empty()) {
    return refuse("request_id", "a batch's jobs have none of their own (give the batch one)");
  }
  if (!member.unique_key().empty()) return refuse("unique_key", "not allowed in a batch");
  if (!member.depends_on().empty()) {
    return refuse("depends_on", "not allowed in a batch (the `then` job runs after them all)");
  }
  if (member.labels().contains(kBatchLabel)) {
    return refuse("labels", absl::StrCat("\"", kBatchLabel, "\" is the server's to set"));
  }
  absl::Status s = ValidateSubmit(member, types, limits, now);
  if (s.ok()) s = CheckSubmitWebhook(member, policy);
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
  return absl::OkStatus();
}

// The job as it ends: state, error, end time.
void End(Job& job, Job::State state, absl::Time now) {
  job.set_state(state);
  job.clear_waiting_for();
  *job.mutable_end_time() = v1::ToProto(now);
  *job.mutable_update_time() = v1::ToProto(now);
}

JobEvent::Type TerminalEventOf(Job::State state) {
  switch (state) {
    case Job::SUCCEEDED: return JobEvent::SUCCEEDED;
    case Job::FAILED: return JobEvent::FAILED;
    default: return JobEvent::CANCELLED;
  }
}

google::protobuf::Value Counts(const Job& parent) {
  google::protobuf::Value out;
  auto& fields = *out.mutable_struct_value()->mutable_fields();
  const v1::BatchProgress& b = parent.batch();
  fields["parent_id"].set_string_value(parent.id());
  fields["total"].set_number_value(static_cast<double>(b.total()));
  fields["succeeded"].set_number_value(static_cast<double>(b.succeeded()));
  fields["failed"].set_number_value(static_cast<double>(b.failed()));
  fields["cancelled"].set_number_value(static_cast<double>(b.cancelled()));
  return out;
}

int64_t Ended(const v1::BatchProgress& b) { return b.succeeded() + b.failed() + b.cancelled(); }

// Whether a child's end is still to be counted: its `then` job not made yet (so every
// child has not ended), and not every child counted.
bool CountsAsChild(const Job& parent) {
  return parent.batch().then_job_id().empty() && Ended(parent.batch()) < parent.batch().total();
}

// `child` (as it ended) counted on its parent, whose progress moves; `record` filled for
// the CHILD event.
void ChildEnded(Job& parent, const Job& child, absl::Time now, v1::ChildEnded* record) {
  v1::BatchProgress& b = *parent.mutable_batch();
  switch (child.state()) {
    case Job::SUCCEEDED: b.set_succeeded(b.succeeded() + 1); break;
    case Job::FAILED: b.set_failed(b.failed() + 1); break;
    default: b.set_cancelled(b.cancelled() + 1); break;
  }
  record->set_job_id(child.id());
  record->set_state(child.state());
  std::string summary;
  if (child.state() == Job::SUCCEEDED) {
    (void)google::protobuf::util::MessageToJsonString(child.result(), &summary);
  } else {
    summary = child.error().message();
  }
  record->set_summary(TruncateUtf8(summary, kMaxChildSummary));

  const int64_t ended = Ended(b);
  v1::Progress& progress = *parent.mutable_progress();
  progress.set_fraction(static_cast<double>(ended) / static_cast<double>(b.total()));
  progress.set_message(absl::StrCat(ended, " of ", b.total(), " children ended",
                                    b.failed() + b.cancelled() > 0
                                        ? absl::StrCat(" (", b.failed(), " failed, ",
                                                       b.cancelled(), " cancelled)")
                                        : ""));
  *parent.mutable_update_time() = v1::ToProto(now);
}

// What follows a CHILD event: TYPE_UNSPECIFIED (children remain, or the parent is being
// cancelled), WAITING (a `then` job to make), or the parent's end.
JobEvent::Type AfterChildEnded(Job& parent, absl::Time now) {
  const v1::BatchProgress& b = parent.batch();
  if (Ended(b) < b.total() || parent.cancel_requested()) return JobEvent::TYPE_UNSPECIFIED;
  if (b.has_then()) return JobEvent::WAITING;
  if (b.succeeded() == b.total()) {
    End(parent, Job::SUCCEEDED, now);
    *parent.mutable_result() = Counts(parent);
  } else {
    End(parent, Job::FAILED, now);
    parent.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kAborted));
    parent.mutable_error()->set_message(absl::StrCat(b.failed() + b.cancelled(), " of ",
                                                     b.total(), " children did not succeed (",
                                                     b.failed(), " failed, ", b.cancelled(),
                                                     " cancelled)"));
    *parent.mutable_error()->mutable_details() = Counts(parent).struct_value();
  }
  return TerminalEventOf(parent.state());
}

// The `then` job's Submit: the request kept in the parent's params, given "batch": the
// counts, labelled as the children are.
absl::StatusOr<v1::SubmitRequest> ThenRequest(const Job& parent,
                                              const google::protobuf::Struct& parent_params) {
  auto then = parent_params.fields().find("then");
  if (then == parent_params.fields().end()) {
    return absl::DataLossError(absl::StrCat("batch ", parent.id(), " kept no `then` request"));
  }
  std::string json;
  v1::SubmitRequest request;
  if (!google::protobuf::util::MessageToJsonString(then->second, &json).ok() ||
      !google::protobuf::util::JsonStringToMessage(json, &request).ok()) {
    return absl::DataLossError(absl::StrCat("batch ", parent.id(), "'s `then` does not parse"));
  }
  (*request.mutable_params()->mutable_fields())["batch"] = Counts(parent);
  (*request.mutable_labels())[kBatchLabel] = parent.id();
  return request;
}

// The parent waits for its `then` job.
void AwaitThen(Job& parent, const Job& then, absl::Time now) {
  parent.mutable_batch()->set_then_job_id(then.id());
  parent.mutable_progress()->set_message(
      absl::StrCat(parent.batch().total(), " of ", parent.batch().total(),
                   " children ended; waiting for the then job ", then.id()));
  *parent.mutable_update_time() = v1::ToProto(now);
}

// The `then` job ended: the parent ends as it did; its terminal event.
JobEvent::Type ThenEnded(Job& parent, const Job& then, absl::Time now) {
  End(parent, then.state(), now);
  parent.mutable_progress()->set_message(
      absl::StrCat(parent.batch().total(), " of ", parent.batch().total(),
                   " children ended; the then job ", then.id(), " ",
                   Job::State_Name(then.state())));
  if (then.has_result()) *parent.mutable_result() = then.result();
  if (then.has_error()) *parent.mutable_error() = then.error();
  if (then.state() != Job::SUCCEEDED) {
    parent.mutable_error()->set_message(
        absl::StrCat("the then job ", then.id(), " ", Job::State_Name(then.state()),
                     then.error().message().empty() ? "" : ": ", then.error().message()));
  }
  return TerminalEventOf(parent.state());
}

}  // namespace

absl::Status ValidateSubmitBatch(const v1::SubmitBatchRequest& request, const JobTypes& types,
                                 const Limits& limits, const webhooks::WebhookPolicy* policy,
                                 absl::Time now) {
  if (request.children().empty()) {
    return absl::InvalidArgumentError("children: a batch needs at least one child");
  }
  if (request.children_size() > kMaxBatchChildren) {
    return absl::InvalidArgumentError(absl::StrCat("children: ", request.children_size(),
                                                   " given; a batch has at most ",
                                                   kMaxBatchChildren));
  }
  if (absl::Status s = ValidateRequestId(request.request_id()); !s.ok()) return s;
  if (absl::Status s = ValidateLabels(request.labels()); !s.ok()) return s;
  if (request.labels_size() > limits.max_labels) {
    return absl::InvalidArgumentError(absl::StrCat("labels: the batch has ",
                                                   request.labels_size(),
                                                   "; the limit is ", limits.max_labels));
  }
  for (int i = 0; i < request.children_size(); ++i) {
    if (absl::Status s = ValidateMember(request.children(i), absl::StrCat("children[", i, "]"),
                                        types, limits, policy, now);
        !s.ok()) {
      return s;
    }
  }
  if (request.has_webhook()) {
    v1::SubmitRequest parent;  // the parent's webhook, checked as a Submit's
    *parent.mutable_webhook() = request.webhook();
    if (absl::Status s = CheckSubmitWebhook(parent, policy); !s.ok()) return s;
  }
  if (request.has_then()) {
    return ValidateMember(request.then(), "then", types, limits, policy, now);
  }
  return absl::OkStatus();
}

NewBatch MakeBatch(const v1::SubmitBatchRequest& request, const JobTypes& types,
                   const std::string& tenant, absl::Time now) {
  NewBatch batch;
  Job& parent = batch.parent;
  parent.set_id(NewJobId(now));
  parent.set_type(kBatchType);
  *parent.mutable_labels() = request.labels();
  if (request.has_webhook()) *parent.mutable_webhook() = request.webhook();
  parent.set_state(Job::WAITING);
  parent.set_max_attempts(1);
  *parent.mutable_create_time() = v1::ToProto(now);
  *parent.mutable_update_time() = v1::ToProto(now);
  parent.set_request_id(request.request_id());
  parent.set_tenant(tenant);
  v1::BatchProgress& progress = *parent.mutable_batch();
  progress.set_total(request.children_size());
  progress.set_has_then(request.has_then());
  parent.mutable_progress()->set_message(
      absl::StrCat("0 of ", request.children_size(), " children ended"));
  if (request.has_then()) {
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(request.then(), &json);
    google::protobuf::Struct then;
    (void)google::protobuf::util::JsonStringToMessage(json, &then);
    (*batch.parent_params.mutable_fields())["then"].mutable_struct_value()->Swap(&then);
  }
  batch.children.reserve(request.children_size());
  for (const v1::SubmitRequest& child : request.children()) {
    Job job = NewJob(child, *types.Find(child.type()), tenant, now);
    job.set_parent_id(parent.id());
    (*job.mutable_labels())[kBatchLabel] = parent.id();
    batch.children.push_back(std::move(job));
  }
  return batch;
}

absl::StatusOr<ThenJob> MakeThenJob(const Job& parent, const google::protobuf::Struct& parent_params,
                                    const JobTypes& types, const Limits& limits, absl::Time now) {
  absl::StatusOr<v1::SubmitRequest> request = ThenRequest(parent, parent_params);
  if (!request.ok()) return request.status();
  if (absl::Status s = ValidateSubmit(*request, types, limits, now); !s.ok()) return s;
  Job job = NewJob(*request, *types.Find(request->type()), parent.tenant(), now);
  job.set_parent_id(parent.id());
  return ThenJob{*std::move(request), std::move(job)};
}

bool MoveParent(Job& parent, const Job& ended, absl::Time now, const MakeThen& make_then,
                const EmitParentEvent& emit) {
  if (parent.state() != Job::WAITING || !parent.has_batch()) return false;
  if (ended.id() == parent.batch().then_job_id()) {
    emit(ThenEnded(parent, ended, now), nullptr);
    return true;
  }
  if (!CountsAsChild(parent)) return false;
  v1::ChildEnded record;
  ChildEnded(parent, ended, now, &record);
  emit(JobEvent::CHILD, &record);
  const JobEvent::Type next = AfterChildEnded(parent, now);
  if (next == JobEvent::TYPE_UNSPECIFIED) return false;
  if (next != JobEvent::WAITING) {
    emit(next, nullptr);
    return true;
  }
  absl::StatusOr<Job> then = make_then();
  if (!then.ok()) {
    End(parent, Job::FAILED, now);
    parent.mutable_error()->set_code(static_cast<int>(then.status().code()));
    parent.mutable_error()->set_message(
        absl::StrCat("the then job could not be made: ", then.status().message()));
    emit(JobEvent::FAILED, nullptr);
    return true;
  }
  AwaitThen(parent, *then, now);
  emit(JobEvent::WAITING, nullptr);
  return false;
}

void CancelWithBatch(Job& child, const std::string& parent_id, absl::Time now) {
  CancelQueued(child, now);
  child.mutable_error()->set_message(absl::StrCat("its batch ", parent_id, " was cancelled"));
}

}  // namespace jobstream::jobs
