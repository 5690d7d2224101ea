#include "server/jobs/graph.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/ids.h"
#include "server/jobs/transitions.h"

namespace jobstream::jobs {

using v1::Job;
using v1::JobEvent;

namespace {

Job::OnDependencyFailure PolicyOf(const Job& job) {
  return job.on_dependency_failure() == Job::ON_DEPENDENCY_FAILURE_UNSPECIFIED
             ? Job::CANCEL
             : job.on_dependency_failure();
}

// The job ends because `dependency` did not succeed, as its policy says.
JobEvent::Type Settle(Job& job, const Job& dependency, absl::Time now) {
  const bool cancel = PolicyOf(job) == Job::CANCEL;
  std::string how = Job::State_Name(dependency.state());
  if (dependency.has_error() && !dependency.error().message().empty()) {
    absl::StrAppend(&how, ": ", TruncateUtf8(dependency.error().message(), 512));
  }
  const absl::StatusCode code =
      cancel ? absl::StatusCode::kCancelled : absl::StatusCode::kFailedPrecondition;
  job.set_state(cancel ? Job::CANCELLED : Job::FAILED);
  job.mutable_error()->set_code(static_cast<int>(code));
  job.mutable_error()->set_message(absl::StrCat("dependency ", dependency.id(), " ", how));
  auto& details = *job.mutable_error()->mutable_details()->mutable_fields();
  details["dependency"].set_string_value(dependency.id());
  details["dependency_state"].set_string_value(Job::State_Name(dependency.state()));
  job.clear_waiting_for();
  *job.mutable_end_time() = v1::ToProto(now);
  *job.mutable_update_time() = v1::ToProto(now);
  return cancel ? JobEvent::CANCELLED : JobEvent::FAILED;
}

}  // namespace

absl::Status ValidateDependsOn(const v1::SubmitRequest& request) {
  if (request.depends_on_size() > kMaxDependencies) {
    return absl::InvalidArgumentError(absl::StrCat("depends_on names ", request.depends_on_size(),
                                                   " jobs; at most ", kMaxDependencies,
                                                   " are allowed"));
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (int i = 0; i < request.depends_on_size(); ++i) {
    const std::string& id = request.depends_on(i);
    if (absl::Status s = ValidateJobId(id); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("depends_on[", i, "]: ", s.message()));
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("depends_on[", i, "]: job ", id, " is named twice"));
    }
  }
  if (!Job::OnDependencyFailure_IsValid(request.on_dependency_failure())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "on_dependency_failure ", request.on_dependency_failure(),
        " is not one of CANCEL, FAIL, RUN"));
  }
  if (request.on_dependency_failure() != Job::ON_DEPENDENCY_FAILURE_UNSPECIFIED &&
      request.depends_on().empty()) {
    return absl::InvalidArgumentError("on_dependency_failure is set but depends_on is empty");
  }
  return absl::OkStatus();
}

absl::Status DependencyNotFound(int index, const std::string& job_id) {
  return absl::NotFoundError(
      absl::StrCat("depends_on[", index, "]: job ", job_id, " not found"));
}

JobEvent::Type StartWaiting(Job& job, const std::vector<Job>& dependencies, absl::Time now,
                            Job* created) {
  job.set_state(Job::WAITING);
  job.clear_waiting_for();
  for (const std::string& id : job.depends_on()) *job.add_waiting_for() = id;
  *created = job;
  std::vector<const Job*> ended;
  for (const Job& d : dependencies) {
    if (v1::IsFinished(d.state())) ended.push_back(&d);
  }
  JobEvent::Type next = DependenciesEnded(job, ended, now);
  if (job.state() == Job::WAITING && job.waiting_for().empty()) {  // it names none
    job.set_state(Job::QUEUED);
    next = JobEvent::QUEUED;
  }
  switch (next) {
    case JobEvent::QUEUED:  // nothing to wait for: created QUEUED
      *created = job;
      return JobEvent::TYPE_UNSPECIFIED;
    case JobEvent::CANCELLED:
    case JobEvent::FAILED:
      return next;
    default:  // WAITING, for fewer than it names or all of them
      *created = job;
      return JobEvent::WAITING;
  }
}

JobEvent::Type DependenciesEnded(Job& job, const std::vector<const Job*>& ended,
                                 absl::Time now) {
  if (job.state() != Job::WAITING) return JobEvent::TYPE_UNSPECIFIED;
  const Job* failed = nullptr;
  bool any = false;
  auto* waiting = job.mutable_waiting_for();
  for (const Job* d : ended) {
    auto it = std::find(waiting->begin(), waiting->end(), d->id());
    if (it == waiting->end()) continue;
    waiting->erase(it);
    any = true;
    if (d->state() != Job::SUCCEEDED && failed == nullptr) failed = d;
  }
  if (!any) return JobEvent::TYPE_UNSPECIFIED;
  // A dependency that did not succeed settles the job at once, unless it runs anyway.
  if (failed != nullptr && PolicyOf(job) != Job::RUN) return Settle(job, *failed, now);
  *job.mutable_update_time() = v1::ToProto(now);
  if (!job.waiting_for().empty()) return JobEvent::WAITING;
  job.set_state(Job::QUEUED);
  return JobEvent::QUEUED;
}

void CancelWaiting(Job& job, absl::Time now) {
  CancelQueued(job, now);
  job.clear_waiting_for();
}

}  // namespace jobstream::jobs
