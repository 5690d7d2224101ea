#include "server/jobs/worker_requests.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/jobs/validation.h"

namespace jobstream::jobs {

namespace {

constexpr size_t kMaxErrorMessage = 16 << 10;
constexpr size_t kMaxErrorDetails = 64 << 10;
constexpr int kMaxLeaseTypes = 32;
constexpr int kMaxLeaseJobs = 1000;
constexpr size_t kMaxWorkerId = 128;
const absl::Duration kMaxWait = absl::Minutes(5);
const absl::Duration kMinLease = absl::Seconds(1);
const absl::Duration kMaxLease = absl::Hours(1);

// A Progress from a worker: refused if out of bounds (an in-server handler's is clamped).
absl::Status CheckProgress(const v1::Progress& p) {
  if (p.step().size() > kMaxStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress.step is ", p.step().size(), " bytes; the limit is ", kMaxStep));
  }
  if (p.message().size() > kMaxMessage) {
    return absl::InvalidArgumentError(absl::StrCat("progress.message is ", p.message().size(),
                                                   " bytes; the limit is ", kMaxMessage));
  }
  if (p.step_index() < 0 || p.step_count() < 0) {
    return absl::InvalidArgumentError("progress.step_index and step_count must be >= 0");
  }
  if (!(p.fraction() >= 0 && p.fraction() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress.fraction ", p.fraction(), " is outside 0..1"));
  }
  return absl::OkStatus();
}

absl::Status CheckWorkerId(absl::string_view id) {
  if (id.size() > kMaxWorkerId) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker_id has ", id.size(), " bytes; at most ", kMaxWorkerId));
  }
  for (char c : id) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError("worker_id must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<LeaseWaiter>> ParseLeaseJobs(const v1::LeaseJobRequest& request,
                                                            const std::string& default_worker_id,
                                                            const auth::Scope& scope,
                                                            const JobTypes& types, absl::Time now) {
  if (request.types().empty()) {
    return absl::InvalidArgumentError("types is required: the EXTERNAL types to take jobs of");
  }
  if (request.types_size() > kMaxLeaseTypes) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxLeaseTypes, " types"));
  }
  auto waiter = std::make_shared<LeaseWaiter>();
  if (!scope.all_tenants) waiter->tenant = scope.tenant;
  for (const std::string& name : request.types()) {
    const JobType* type = types.Find(name);
    if (type == nullptr || type->in_server()) {
      std::vector<std::string> external;
      for (const JobType* t : types.All()) {
        if (!t->in_server()) external.push_back(t->name);
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "type \"", name.substr(0, 64), "\" ",
          type == nullptr ? "is not declared" : "runs in the server, not on workers",
          "; EXTERNAL types: ", external.empty() ? "none" : absl::StrJoin(external, ", ")));
    }
    if (std::find(waiter->types.begin(), waiter->types.end(), name) == waiter->types.end()) {
      waiter->types.push_back(name);
    }
  }
  if (absl::Status s = CheckWorkerId(request.worker_id()); !s.ok()) return s;
  waiter->worker_id =
      request.worker_id().empty() ? default_worker_id.substr(0, kMaxWorkerId) : request.worker_id();
  absl::Duration wait = absl::ZeroDuration();
  if (request.has_wait()) {
    auto d = DurationWithin(request.wait(), "wait", absl::ZeroDuration(), kMaxWait);
    if (!d.ok()) return d.status();
    wait = *d;
  }
  if (request.has_lease_duration()) {
    auto d = DurationWithin(request.lease_duration(), "lease_duration", kMinLease, kMaxLease);
    if (!d.ok()) return d.status();
    waiter->lease_duration = *d;
  }
  if (request.max_jobs() < 0 || request.max_jobs() > kMaxLeaseJobs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_jobs ", request.max_jobs(), " is outside 0..", kMaxLeaseJobs, " (0 means 1)"));
  }
  waiter->max_jobs = std::max(request.max_jobs(), 1);
  waiter->deadline = now + wait;
  return waiter;
}

absl::StatusOr<std::optional<absl::Duration>> ParseReportProgress(
    const v1::ReportProgressRequest& request) {
  std::optional<absl::Duration> extension;
  if (request.has_lease_duration()) {
    auto d = DurationWithin(request.lease_duration(), "lease_duration", kMinLease, kMaxLease);
    if (!d.ok()) return d.status();
    extension = *d;
  }
  if (request.has_progress()) {
    if (absl::Status s = CheckProgress(request.progress()); !s.ok()) return s;
  }
  return extension;
}

absl::StatusOr<AttemptEnd> CompletionOf(const v1::CompleteJobRequest& request,
                                        size_t max_result_bytes) {
  const size_t size = request.result().ByteSizeLong();
  if (size > max_result_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("result is ", size, " bytes; the limit is ", max_result_bytes));
  }
  AttemptEnd end(AttemptEnd::kSucceeded);
  end.result = request.result();
  return end;
}

absl::StatusOr<AttemptEnd> FailureOf(const v1::FailJobRequest& request) {
  const v1::Error& e = request.error();
  const int code = e.code() == 0 ? static_cast<int>(absl::StatusCode::kUnknown) : e.code();
  if (code < 1 || code > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("error.code ", e.code(), " is not a google.rpc.Code from 1 to 16"));
  }
  if (e.message().size() > kMaxErrorMessage) {
    return absl::InvalidArgumentError(absl::StrCat("error.message is ", e.message().size(),
                                                   " bytes; the limit is ", kMaxErrorMessage));
  }
  if (e.details().ByteSizeLong() > kMaxErrorDetails) {
    return absl::InvalidArgumentError(
        absl::StrCat("error.details is over ", kMaxErrorDetails, " bytes"));
  }
  AttemptEnd end(AttemptEnd::kFailed);
  end.error = absl::Status(static_cast<absl::StatusCode>(code),
                           e.message().empty() ? "the worker reported a failure" : e.message());
  end.retryable = request.retryable();
  end.details = e.details();
  return end;
}

AttemptEnd ReleaseOf(absl::string_view worker_id) {
  AttemptEnd end(AttemptEnd::kRequeue);
  end.error = absl::UnavailableError(
      absl::StrCat("worker \"", worker_id, "\" gave the job back unfinished"));
  return end;
}

}  // namespace jobstream::jobs
