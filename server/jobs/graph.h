// Job graphs: a job submitted with depends_on is WAITING until the jobs it names have
// ended, then QUEUED, or — if one of them did not succeed — settled by its
// on_dependency_failure policy. Every decision about a WAITING job is made here, on job
// records alone, so both stores move such jobs the same way; a store only finds the
// jobs waiting for one that ended and writes what these functions say.
//
// Cycles cannot be made: every dependency must exist when its dependent is submitted,
// so a dependency is always older than the jobs that wait for it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::jobs {

inline constexpr int kMaxDependencies = 100;

// depends_on and on_dependency_failure as given: well-formed ids, at most
// kMaxDependencies, none twice, a known policy. INVALID_ARGUMENT naming the field.
absl::Status ValidateDependsOn(const v1::SubmitRequest& request);

// NOT_FOUND for depends_on[index], a job that does not exist (or is another tenant's:
// the same answer, as for any job beyond the caller's tenant).
absl::Status DependencyNotFound(int index, const std::string& job_id);

// A new job with depends_on, given those jobs as they stand (found, in any order): the
// state it is created in. QUEUED if they all succeeded (or all ended and its policy is
// RUN); otherwise WAITING for those not ended yet. Returns the event that follows its
// CREATED one: WAITING, or CANCELLED / FAILED (a dependency that did not succeed settled
// it at once; the job as CREATED is `created`, as WAITING); TYPE_UNSPECIFIED for none.
v1::JobEvent::Type StartWaiting(v1::Job& job, const std::vector<v1::Job>& dependencies,
                                absl::Time now, v1::Job* created);

// Jobs a WAITING job waits for ended (each as its final record): the job's event — WAITING
// (for the others still), QUEUED, or CANCELLED / FAILED by its policy; TYPE_UNSPECIFIED,
// with the job unchanged, if it was waiting for none of them (it moved on already).
v1::JobEvent::Type DependenciesEnded(v1::Job& job, const std::vector<const v1::Job*>& ended,
                                     absl::Time now);

// A WAITING job cancelled on request (its CANCELLED event is the caller's to add).
void CancelWaiting(v1::Job& job, absl::Time now);

}  // namespace jobstream::jobs
