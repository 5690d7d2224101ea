// Checks of client input that need no storage. Each returns INVALID_ARGUMENT with a
// message naming the field and the rule, so a client can fix the call.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/job_types.h"

namespace jobstream::jobs {

struct Limits {
  size_t max_params_bytes = 1 << 20;
  int max_labels = 32;  // per job, at most 256
  // QUEUED jobs of one tenant (of the whole server, without tokens) before Submit refuses.
  int64_t max_queued_per_tenant = 1'000'000;
};

// The whole SubmitRequest, including the type's own check of params.
// A PauseType or ResumeType (no `pause`): a declared type, a reason of up to 500 bytes of
// text without control characters.
absl::Status ValidateTypePause(const std::string& type, const std::optional<v1::TypePause>& pause,
                               const JobTypes& types);
absl::Status ValidateSubmit(const v1::SubmitRequest& request, const JobTypes& types,
                            const Limits& limits, absl::Time now);
// An operator's reason (PauseType, CancelJob, RetryJob, bulk operations): up to 500 bytes
// of text without control characters.
absl::Status ValidateReason(absl::string_view reason);
// At most max_size characters of printable ASCII (with or without spaces); errors name
// `field` and show the value.
absl::Status ValidatePrintable(absl::string_view value, absl::string_view field, size_t max_size,
                               bool spaces);
absl::Status ValidateRequestId(absl::string_view request_id);
// A Submit's concurrency_key: up to 128 printable ASCII characters (spaces allowed).
absl::Status ValidateConcurrencyKey(absl::string_view key);
// A WaitJob timeout: 0 (answer at once) up to 5 minutes.
absl::Status ValidateWaitTimeout(absl::Duration timeout);
absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels);
absl::Status ValidateStates(const google::protobuf::RepeatedField<int>& states);
// A Timestamp within 0001-01-01 .. 9999-12-31 with nanos in 0..999999999.
bool IsValidTimestamp(const google::protobuf::Timestamp& ts);
// A well-formed Duration within [min, max]; `field` names it in the error.
absl::StatusOr<absl::Duration> DurationWithin(const google::protobuf::Duration& d,
                                              absl::string_view field, absl::Duration min,
                                              absl::Duration max);

}  // namespace jobstream::jobs
