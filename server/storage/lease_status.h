// The answer to a call of an attempt whose lease no longer holds its job, said once for
// both stores' managers (the PostgreSQL store checks the fence itself).
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace jobstream::storage {

// FAILED_PRECONDITION: drop the job.
inline absl::Status LeaseNotHeld(absl::string_view lease_id, absl::string_view job_id) {
  return absl::FailedPreconditionError(
      absl::StrCat("lease ", lease_id, " is no longer held (it expired, or job ", job_id,
                   " was released, leased again, cancelled or finished); drop the job"));
}

}  // namespace jobstream::storage
