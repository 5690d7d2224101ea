// The WorkerService's requests checked and turned into what a manager acts on, said once
// for both managers. Each error is INVALID_ARGUMENT naming the field and the rule.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "jobstream/v1/workers.pb.h"
#include "server/auth/scope.h"
#include "server/jobs/job_types.h"
#include "server/jobs/leases.h"
#include "server/jobs/transitions.h"
#include "server/storage/lease_status.h"

namespace jobstream::jobs {

// A LeaseJob call as a waiter (without `done`): its EXTERNAL types (each once), the
// caller's tenant unless it sees all, worker id (`default_worker_id` if none given),
// max_jobs, lease duration, and deadline (`now` plus the wait; `now` for no wait).
absl::StatusOr<std::shared_ptr<LeaseWaiter>> ParseLeaseJobs(const v1::LeaseJobRequest& request,
                                                            const std::string& default_worker_id,
                                                            const auth::Scope& scope,
                                                            const JobTypes& types, absl::Time now);

// A ReportProgress call's progress checked; the lease duration it asks for (nullopt: the
// lease keeps its own).
absl::StatusOr<std::optional<absl::Duration>> ParseReportProgress(
    const v1::ReportProgressRequest& request);

// How the attempt ends for CompleteJob (a result over `max_result_bytes` is refused),
// FailJob, and ReleaseJob by `worker_id`.
absl::StatusOr<AttemptEnd> CompletionOf(const v1::CompleteJobRequest& request,
                                        size_t max_result_bytes);
absl::StatusOr<AttemptEnd> FailureOf(const v1::FailJobRequest& request);
AttemptEnd ReleaseOf(absl::string_view worker_id);

using storage::LeaseNotHeld;

}  // namespace jobstream::jobs
