// Unique jobs: a Submit with a unique_key creates nothing while a job of its tenant with
// that key holds it, and answers that job (deduplicated). Whether a job still holds its
// key is decided here, on its record alone, for both stores; each store keeps, per tenant
// and key, the id of the job that took it last, and hands it over when that job no
// longer holds it (or is gone).
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::jobs {

// unique_key, unique_for and unique_while as given: INVALID_ARGUMENT naming the field.
absl::Status ValidateUnique(const v1::SubmitRequest& request);

// Whether `job` (a stored record, with its unique_key) still holds its key at `now`.
bool HoldsUniqueKey(const v1::Job& job, absl::Time now);

}  // namespace jobstream::jobs
