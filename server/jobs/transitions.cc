#include "server/jobs/transitions.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/handler.h"
#include "server/jobs/ids.h"
#include "server/metrics/server_metrics.h"
#include "server/tracing/job_spans.h"
#include "server/tracing/trace_context.h"

namespace jobstream::jobs {

using v1::Job;
using v1::JobEvent;
using v1::ToProto;

std::string TruncateUtf8(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

void RecordStateChange(const JobEvent& event) {
  server_metrics::CountStateChange(event);
  if (v1::IsTerminal(event.type())) tracing::EndJobSpan(event.status(), event.type());
  switch (event.type()) {
    case JobEvent::STEP:
    case JobEvent::PROGRESS:
    case JobEvent::ARTIFACT:
      return;
    default:
      break;
  }
  if (!logs::Enabled()) return;
  const Job& job = event.status();
  logs::Line line("job");
  line.Add("job_id", job.id());
  if (!job.tenant().empty()) line.Add("tenant", job.tenant());
  line.Add("type", job.type())
      .Add("event", JobEvent::Type_Name(event.type()))
      .Add("state", Job::State_Name(job.state()))
      .Add("attempt", int64_t{job.attempt()})
      .Add("sequence", event.sequence());
  if (!job.trace().trace_id().empty()) line.Add("trace_id", job.trace().trace_id());
  if (!job.worker_id().empty() && event.type() == JobEvent::STARTED) {
    line.Add("worker", job.worker_id());
  }
  if (job.has_error() && (event.type() == JobEvent::FAILED || event.type() == JobEvent::RETRYING)) {
    line.Add("error", job.error().message().substr(0, 200));
  }
}

AttemptEnd LeaseExpired(const storage::LeaseRecord& lease) {
  AttemptEnd end(AttemptEnd::kFailed);
  end.error = absl::UnavailableError(absl::StrCat(
      "lease expired: worker \"", lease.worker_id(), "\" reported nothing for ",
      absl::FormatDuration(absl::Milliseconds(lease.duration_ms()))));
  end.retryable = true;
  return end;
}

AttemptEnd AttemptTimedOut(const Job& job, const JobType& type) {
  AttemptEnd end(AttemptEnd::kFailed);
  end.error = absl::DeadlineExceededError(absl::StrCat(
      "attempt ", job.attempt(), " timed out after ", absl::FormatDuration(type.timeout)));
  end.retryable = true;
  return end;
}

AttemptEnd Interrupted(const Job& job, absl::string_view why) {
  AttemptEnd end(AttemptEnd::kFailed);
  end.error = absl::UnavailableError(
      absl::StrCat(why, " while attempt ", job.attempt(), " was running"));
  end.retryable = true;
  return end;
}

void CancelQueued(Job& job, absl::Time now) {
  job.set_state(Job::CANCELLED);
  *job.mutable_end_time() = ToProto(now);
  job.clear_next_attempt_time();
  job.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
  job.mutable_error()->set_message("cancelled by request");
}

v1::OperatorAction ActionOf(absl::string_view action, const std::string& by,
                            const std::string& reason, absl::Time now, int64_t sequence) {
  v1::OperatorAction made;
  made.set_action(std::string(action));
  made.set_by(by);
  made.set_reason(reason);
  *made.mutable_time() = ToProto(now);
  made.set_sequence(sequence);
  return made;
}

void Acted(Job& job, v1::OperatorAction action, int64_t sequence) {
  if (action.action().empty()) return;
  action.set_sequence(sequence);
  *job.mutable_last_action() = std::move(action);
}

absl::Status BatchRunning(const Job& job) {
  return absl::FailedPreconditionError(absl::StrCat(
      "job ", job.id(), " is a child of batch ", job.parent_id(),
      ", which is still running and has counted its end; retry it once the batch has ended"));
}

absl::Status CheckRetry(const Job& job) {
  if (job.has_batch()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job.id(), " is a batch's parent; retry its children (label jobstream/batch=",
        job.id(), ")"));
  }
  if (job.state() == Job::SUCCEEDED) {
    return StateError(job, "only a FAILED or CANCELLED job can be retried; replay it (as_new)");
  }
  if (job.state() != Job::FAILED && job.state() != Job::CANCELLED) {
    return StateError(job, "only a FAILED or CANCELLED job can be retried");
  }
  return absl::OkStatus();
}

void RetryEnded(Job& job, const v1::OperatorAction& action, absl::Time now) {
  job.set_state(Job::QUEUED);
  job.set_series(std::max(job.series(), 1) + 1);
  job.set_attempt(0);
  job.clear_result();
  job.clear_progress();
  job.clear_start_time();
  job.clear_end_time();
  job.clear_next_attempt_time();
  job.clear_run_at();
  job.clear_worker_id();
  job.clear_waiting_for();
  job.set_cancel_requested(false);
  *job.mutable_update_time() = ToProto(now);
  *job.mutable_last_action() = action;
}

v1::SubmitRequest ReplayRequest(const Job& job, const google::protobuf::Struct* params) {
  v1::SubmitRequest request;
  request.set_type(job.type());
  *request.mutable_params() = params != nullptr ? *params : job.params();
  *request.mutable_labels() = job.labels();
  request.mutable_labels()->erase("jobstream/batch");  // batch.h's: the new job is in none
  (*request.mutable_labels())[kReplayOfLabel] = job.id();
  request.set_priority(job.priority());
  request.set_max_attempts(job.max_attempts());
  if (job.has_webhook()) *request.mutable_webhook() = job.webhook();
  request.set_concurrency_key(job.concurrency_key());
  return request;
}

absl::Status QueueFull(const std::string& tenant, int64_t queued) {
  return absl::ResourceExhaustedError(absl::StrCat(
      tenant.empty() ? "the server" : absl::StrCat("tenant \"", tenant, "\""), " has ", queued,
      " queued jobs, the limit (--max_queued_per_tenant); submit again as they start"));
}

absl::Status StateError(const v1::Job& job, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("job ", job.id(), " is ",
                                                    v1::Job::State_Name(job.state()), "; ", what));
}

v1::JobEvent EventOf(v1::JobEvent::Type type, absl::Time now) {
  v1::JobEvent event;
  event.set_type(type);
  *event.mutable_time() = ToProto(now);
  return event;
}

Job NewJob(const v1::SubmitRequest& request, const JobType& type, const std::string& tenant,
           absl::Time now) {
  Job job;
  job.set_id(NewJobId(now));
  job.set_type(request.type());
  *job.mutable_labels() = request.labels();
  job.set_state(Job::QUEUED);
  job.set_series(1);
  job.set_priority(request.priority() != 0 ? request.priority() : type.default_priority);
  job.set_max_attempts(request.max_attempts() > 0 ? request.max_attempts() : type.max_attempts);
  if (request.has_run_at()) *job.mutable_run_at() = request.run_at();
  if (request.has_webhook()) *job.mutable_webhook() = request.webhook();
  *job.mutable_create_time() = ToProto(now);
  job.set_request_id(request.request_id());
  job.set_tenant(tenant);
  *job.mutable_depends_on() = request.depends_on();
  job.set_on_dependency_failure(request.on_dependency_failure());
  job.set_unique_key(request.unique_key());
  if (request.has_unique_for()) *job.mutable_unique_for() = request.unique_for();
  job.set_unique_while(request.unique_while());
  job.set_concurrency_key(request.concurrency_key());
  // Validated before: a malformed traceparent never gets here.
  *job.mutable_trace() = tracing::NewJobTrace(tracing::ParseTraceparent(request.traceparent()));
  return job;
}

absl::Status CheckSubmitWebhook(const v1::SubmitRequest& request,
                                const webhooks::WebhookPolicy* policy) {
  if (!request.has_webhook()) return absl::OkStatus();
  if (policy == nullptr || !policy->enabled()) {
    return absl::InvalidArgumentError(
        "this server delivers no webhooks: it was started without --webhook_allow");
  }
  return policy->Validate(request.webhook());
}

AttemptEnd EndOfRun(const Job& job, const JobType& type,
                    absl::StatusOr<google::protobuf::Value> outcome, bool timed_out,
                    bool server_stopping, size_t max_result_bytes) {
  AttemptEnd end(AttemptEnd::kFailed);
  // An outcome the handler reached stands; only an attempt cut short by shutdown is redone.
  if (outcome.ok()) {
    const size_t size = outcome->ByteSizeLong();
    if (size <= max_result_bytes) {
      end.kind = AttemptEnd::kSucceeded;
      end.result = *std::move(outcome);
    } else {
      end.error = absl::InvalidArgumentError(
          absl::StrCat("the result is ", size, " bytes; the limit is ", max_result_bytes));
    }
  } else if (outcome.status().code() == absl::StatusCode::kCancelled && job.cancel_requested()) {
    end.error = outcome.status();
  } else if (timed_out) {
    end = AttemptTimedOut(job, type);
  } else if (server_stopping) {
    end.kind = AttemptEnd::kRequeue;
    end.error = absl::UnavailableError("the server stopped; the job runs again when it starts");
  } else {
    end.error = outcome.status();
    end.retryable = IsRetryable(end.error);
    GetErrorDetails(end.error, &end.details);
    end.error = absl::Status(end.error.code(), end.error.message());  // without payloads
  }
  return end;
}

storage::LeaseRecord StartJob(Job& job, const JobType& type, absl::Time now,
                              const std::string& worker_id, const std::string& lease_id,
                              absl::Duration lease_duration) {
  // Observed where every attempt starts and ends, on both stores (a write that then
  // fails leaves the store failed; its one extra observation is the least of it).
  const absl::Time ready = server_metrics::ReadySince(job);
  server_metrics::ObserveQueueWait(job.type(), now - ready);
  tracing::EndWaitSpan(job, ready, now);
  job.set_state(Job::RUNNING);
  job.set_attempt(job.attempt() + 1);
  *job.mutable_start_time() = ToProto(now);
  job.set_worker_id(worker_id);
  job.clear_progress();
  job.clear_next_attempt_time();
  storage::LeaseRecord lease;
  lease.set_worker_id(worker_id);
  if (type.timeout != absl::InfiniteDuration()) {
    lease.set_attempt_deadline_ms(absl::ToUnixMillis(now + type.timeout));
  }
  if (!lease_id.empty()) {
    const absl::Duration duration =
        lease_duration > absl::ZeroDuration() ? lease_duration : type.lease_duration;
    lease.set_lease_id(lease_id);
    lease.set_duration_ms(absl::ToInt64Milliseconds(duration));
    lease.set_deadline_ms(absl::ToUnixMillis(now + duration));
  }
  return lease;
}

JobEvent::Type EndJobAttempt(Job& job, const JobType& type, const AttemptEnd& end,
                             absl::Time now) {
  auto set_error = [&job](const absl::Status& s) {
    job.mutable_error()->set_code(static_cast<int>(s.code()));
    job.mutable_error()->set_message(std::string(s.message()));
  };
  // A job whose cancel was requested is never run again: whatever stopped it, it ends.
  const bool cancelled =
      job.cancel_requested() &&
      (end.kind == AttemptEnd::kRequeue ||
       (end.kind == AttemptEnd::kFailed &&
        (end.error.code() == absl::StatusCode::kCancelled || end.retryable)));
  if (job.has_start_time()) {
    server_metrics::ObserveRunTime(job.type(), now - v1::ToTime(job.start_time()));
  }
  const int attempt = job.attempt();  // a requeue gives it back below
  JobEvent::Type event;
  absl::Time ready = now;
  bool requeue = false;
  if (end.kind == AttemptEnd::kSucceeded) {
    event = JobEvent::SUCCEEDED;
    job.set_state(Job::SUCCEEDED);
    *job.mutable_result() = end.result;
    job.clear_error();
    job.mutable_progress()->set_fraction(1.0);
  } else if (cancelled) {
    event = JobEvent::CANCELLED;
    job.set_state(Job::CANCELLED);
    std::string why = "cancelled by request";
    if (end.error.code() != absl::StatusCode::kCancelled) {
      why += " (" + std::string(end.error.message()) + ")";
    }
    set_error(absl::CancelledError(why));
  } else if (end.kind == AttemptEnd::kRequeue) {
    // Interrupted, not failed: the attempt does not count.
    event = JobEvent::RETRYING;
    set_error(end.error);
    job.set_attempt(job.attempt() - 1);
    requeue = true;
  } else if (end.retryable && job.attempt() < job.max_attempts()) {
    event = JobEvent::RETRYING;
    set_error(end.error);
    ready = now + type.Backoff(job.attempt());
    requeue = true;
  } else {
    event = JobEvent::FAILED;
    job.set_state(Job::FAILED);
    set_error(end.error);
    if (!end.details.fields().empty()) *job.mutable_error()->mutable_details() = end.details;
  }
  if (requeue) {
    job.set_state(Job::QUEUED);
    *job.mutable_next_attempt_time() = ToProto(ready);
  }
  if (v1::IsFinished(job.state())) *job.mutable_end_time() = ToProto(now);
  tracing::EndAttemptSpan(job, attempt, event, now);
  return event;
}

JobEvent::Type ApplyProgress(v1::Progress& cur, const v1::Progress& p) {
  const double fraction = std::isfinite(p.fraction()) ? std::clamp(p.fraction(), 0.0, 1.0) : 0;
  const bool new_step =
      !p.step().empty() && (p.step() != cur.step() ||
                            (p.step_index() > 0 && p.step_index() != cur.step_index()));
  JobEvent::Type type = JobEvent::TYPE_UNSPECIFIED;
  if (new_step) {
    type = JobEvent::STEP;
    cur.set_step(TruncateUtf8(p.step(), kMaxStep));
    cur.set_step_index(p.step_index() > 0 ? p.step_index() : cur.step_index() + 1);
    if (p.step_count() > 0) cur.set_step_count(p.step_count());
    if (fraction > 0) cur.set_fraction(fraction);
    cur.set_message(TruncateUtf8(p.message(), kMaxMessage));
    return type;
  }
  // Zero and empty mean "unchanged", so a report may carry only what moved.
  if (p.step_count() > 0 && p.step_count() != cur.step_count()) {
    cur.set_step_count(p.step_count());
    type = JobEvent::PROGRESS;
  }
  if (fraction > 0 && fraction != cur.fraction()) {
    cur.set_fraction(fraction);
    type = JobEvent::PROGRESS;
  }
  if (!p.message().empty() && p.message() != cur.message()) {
    cur.set_message(TruncateUtf8(p.message(), kMaxMessage));
    type = JobEvent::PROGRESS;
  }
  return type;
}

}  // namespace jobstream::jobs
