#include "server/jobs/unique.h"

#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/validation.h"

namespace jobstream::jobs {

namespace {
constexpr size_t kMaxUniqueKey = 256;
constexpr absl::Duration kMaxUniqueFor = absl::Hours(24 * 366);
}  // namespace

absl::Status ValidateUnique(const v1::SubmitRequest& request) {
  const std::string& key = request.unique_key();
  if (key.empty()) {
    if (request.has_unique_for() || request.unique_while() != v1::Job::UNIQUE_WHILE_UNSPECIFIED) {
      return absl::InvalidArgumentError("unique_for and unique_while need a unique_key");
    }
    return absl::OkStatus();
  }
  if (absl::Status s = ValidatePrintable(key, "unique_key", kMaxUniqueKey, /*spaces=*/true);
      !s.ok()) {
    return s;
  }
  if (!v1::Job::UniqueWhile_IsValid(request.unique_while())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unique_while ", request.unique_while(), " is not ACTIVE"));
  }
  const bool active = request.unique_while() == v1::Job::ACTIVE;
  if (active == request.has_unique_for()) {
    return absl::InvalidArgumentError(
        "a unique_key needs one of unique_for (a window from the job's creation) or "
        "unique_while ACTIVE (while the job is live)");
  }
  if (request.has_unique_for()) {
    auto window = DurationWithin(request.unique_for(), "unique_for", absl::Seconds(1), kMaxUniqueFor);
    if (!window.ok()) return window.status();
  }
  return absl::OkStatus();
}

bool HoldsUniqueKey(const v1::Job& job, absl::Time now) {
  if (job.unique_while() == v1::Job::ACTIVE) return !v1::IsFinished(job.state());
  return now < v1::ToTime(job.create_time()) + v1::ToDuration(job.unique_for());
}

}  // namespace jobstream::jobs
