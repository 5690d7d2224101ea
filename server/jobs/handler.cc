#include "server/jobs/handler.h"

#include "absl/strings/cord.h"

namespace jobstream::jobs {
namespace {
constexpr char kRetryable[] = "type.jobstream.dev/retryable";
constexpr char kDetails[] = "type.jobstream.dev/google.protobuf.Struct";
}  // namespace

void MarkRetryable(absl::Status& status, bool retryable) {
  status.SetPayload(kRetryable, absl::Cord(retryable ? "1" : "0"));
}

bool IsRetryable(const absl::Status& status) {
  auto mark = status.GetPayload(kRetryable);
  if (mark.has_value()) return *mark == "1";
  return status.code() == absl::StatusCode::kUnavailable;
}

void SetErrorDetails(absl::Status& status, const google::protobuf::Struct& details) {
  status.SetPayload(kDetails, absl::Cord(details.SerializeAsString()));
}

bool GetErrorDetails(const absl::Status& status, google::protobuf::Struct* details) {
  auto payload = status.GetPayload(kDetails);
  return payload.has_value() && details->ParseFromString(std::string(*payload));
}

}  // namespace jobstream::jobs
