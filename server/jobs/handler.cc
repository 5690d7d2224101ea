#include "server/jobs/handler.h"

#include "absl/strings/cord.h"
#include "server/exec/output_dir.h"

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

absl::StatusOr<v1::Artifact> AttachFile(JobContext& ctx, absl::string_view name,
                                        absl::string_view content_type, const std::string& path) {
  auto upload = ctx.CreateArtifact(name, content_type);
  if (!upload.ok()) return upload.status();
  absl::Status read = exec::ReadFileInPieces(
      path, kArtifactChunkBytes, [&](absl::string_view piece) { return (*upload)->Append(piece); });
  if (!read.ok()) return read;
  return (*upload)->Commit();
}

}  // namespace jobstream::jobs
