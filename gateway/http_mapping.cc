#include "gateway/http_mapping.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace jobstream::gateway {

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::CANCELLED: return 499;
    case grpc::StatusCode::UNKNOWN: return 500;
    case grpc::StatusCode::INVALID_ARGUMENT: return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::ALREADY_EXISTS: return 409;
    case grpc::StatusCode::PERMISSION_DENIED: return 403;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::FAILED_PRECONDITION: return 409;  // a state conflict here
    case grpc::StatusCode::ABORTED: return 409;
    case grpc::StatusCode::OUT_OF_RANGE: return 400;
    case grpc::StatusCode::UNIMPLEMENTED: return 501;
    case grpc::StatusCode::INTERNAL: return 500;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    case grpc::StatusCode::DATA_LOSS: return 500;
    default: return 500;
  }
}

namespace {
const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",  "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",       "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

// A JSON string literal, escaped by the JSON printer itself.
std::string JsonString(absl::string_view s) {
  google::protobuf::Value v;
  v.set_string_value(std::string(s));
  return ToJson(v);
}
}  // namespace

std::string ErrorJson(grpc::StatusCode code, absl::string_view message) {
  return absl::StrCat("{\"code\":", static_cast<int>(code), ",\"message\":", JsonString(message),
                      ",\"status\":\"", CodeName(code), "\"}");
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out);
  return out;
}

absl::Status FromJson(absl::string_view json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (status.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("body is not a valid ", message->GetDescriptor()->name(),
                   " in JSON: ", status.message().as_string()));
}

std::string SseEvent(absl::string_view id, absl::string_view event, absl::string_view data) {
  std::string out;
  if (!id.empty()) absl::StrAppend(&out, "id: ", id, "\n");
  if (!event.empty()) absl::StrAppend(&out, "event: ", event, "\n");
  size_t start = 0;
  for (size_t i = 0; i <= data.size(); ++i) {
    if (i == data.size() || data[i] == '\n' || data[i] == '\r') {
      absl::StrAppend(&out, "data: ", data.substr(start, i - start), "\n");
      if (i + 1 < data.size() && data[i] == '\r' && data[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  out.push_back('\n');
  return out;
}

std::string SseComment(absl::string_view text) { return absl::StrCat(": ", text, "\n\n"); }

std::string SseRetry(int milliseconds) { return absl::StrCat("retry: ", milliseconds, "\n\n"); }

absl::StatusOr<std::optional<int64_t>> ResumeAfter(std::optional<absl::string_view> last_event_id,
                                                   std::optional<absl::string_view> after_param) {
  auto parse = [](absl::string_view what, absl::string_view text) -> absl::StatusOr<int64_t> {
    int64_t value;
    if (!absl::SimpleAtoi(text, &value) || value < 0 || text.empty() || text[0] == '+' ||
        text[0] == ' ') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " must be a sequence number (a non-negative integer), not \"",
          text.substr(0, 40), "\""));
    }
    return value;
  };
  if (last_event_id.has_value()) {
    absl::string_view id = *last_event_id;
    // /v1/events ids are "jobId:sequence": the sequence is after the last colon.
    const size_t colon = id.rfind(':');
    if (colon != absl::string_view::npos) id = id.substr(colon + 1);
    auto value = parse("Last-Event-ID", id);
    if (!value.ok()) return value.status();
    return std::optional<int64_t>(*value);
  }
  if (after_param.has_value()) {
    auto value = parse("after", *after_param);
    if (!value.ok()) return value.status();
    return std::optional<int64_t>(*value);
  }
  return std::optional<int64_t>();
}

}  // namespace jobstream::gateway
