#include "gateway/http_mapping.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "jobstream/v1/job_states.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "boost/url/encode.hpp"
#include "boost/url/rfc/unreserved_chars.hpp"
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

RangeRequest ParseRange(std::optional<absl::string_view> header, int64_t size) {
  RangeRequest whole;
  if (!header) return whole;
  absl::string_view spec = absl::StripAsciiWhitespace(*header);
  if (!absl::ConsumePrefix(&spec, "bytes=") || spec.find(',') != absl::string_view::npos) {
    return whole;
  }
  spec = absl::StripAsciiWhitespace(spec);
  const size_t dash = spec.find('-');
  if (dash == absl::string_view::npos) return whole;
  absl::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  auto number = [](absl::string_view text, int64_t* out) {
    if (text.empty()) return false;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
    }
    return absl::SimpleAtoi(text, out);
  };
  int64_t first = 0, last = 0;
  RangeRequest r;
  r.kind = RangeRequest::kPartial;
  if (a.empty()) {  // a suffix: the last N bytes
    if (!number(b, &last)) return whole;
    if (last == 0 || size == 0) return {RangeRequest::kUnsatisfiable, 0, 0};
    r.first = std::max<int64_t>(0, size - last);
    r.last = size - 1;
    return r;
  }
  if (!number(a, &first)) return whole;
  if (b.empty()) {
    last = size - 1;
  } else if (!number(b, &last) || last < first) {
    return whole;  // invalid: ignored, as RFC 9110 says
  }
  if (first >= size) return {RangeRequest::kUnsatisfiable, 0, 0};
  r.first = first;
  r.last = std::min(last, size - 1);
  return r;
}

bool EtagMatches(absl::string_view header, absl::string_view etag) {
  for (absl::string_view item : absl::StrSplit(header, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item == "*") return true;
    absl::ConsumePrefix(&item, "W/");
    if (item == etag) return true;
  }
  return false;
}

std::string ContentDisposition(bool attachment, absl::string_view filename) {
  std::string ascii;
  for (char c : filename) {
    const unsigned char u = static_cast<unsigned char>(c);
    ascii.push_back(u >= 0x20 && u < 0x7f && c != '"' && c != '\\' ? c : '_');
  }
  std::string encoded = boost::urls::encode(
      boost::core::string_view(filename.data(), filename.size()), boost::urls::unreserved_chars);
  return absl::StrCat(attachment ? "attachment" : "inline", "; filename=\"", ascii,
                      "\"; filename*=UTF-8''", encoded);
}

int RetryAfterSeconds(const v1::Job& job, absl::Time now) {
  constexpr double kMin = 1, kMax = 30;
  double seconds = kMin;
  if (job.state() == v1::Job::RUNNING) {
    const double fraction = job.progress().fraction();
    const double elapsed = absl::ToDoubleSeconds(now - v1::ToTime(job.start_time()));
    if (fraction > 0 && fraction < 1 && elapsed > 0) {
      seconds = elapsed * (1 - fraction) / fraction;
    }
  } else if (job.state() == v1::Job::QUEUED) {
    const google::protobuf::Timestamp& at =
        job.has_next_attempt_time() ? job.next_attempt_time() : job.run_at();
    if (job.has_next_attempt_time() || job.has_run_at()) {
      seconds = absl::ToDoubleSeconds(v1::ToTime(at) - now);
    }
  }
  return static_cast<int>(std::ceil(std::clamp(seconds, kMin, kMax)));
}

std::string ArtifactPath(absl::string_view job_id, absl::string_view name) {
  return absl::StrCat("/v1/jobs/", job_id, "/artifacts/",
                      boost::urls::encode(boost::core::string_view(name.data(), name.size()),
                                          boost::urls::unreserved_chars));
}

std::optional<std::string> CookieValue(absl::string_view cookie_header, absl::string_view name) {
  for (absl::string_view pair : absl::StrSplit(cookie_header, ';')) {
    pair = absl::StripAsciiWhitespace(pair);
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos || pair.substr(0, eq) != name) continue;
    absl::string_view value = pair.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return std::string(value);
  }
  return std::nullopt;
}

Credential RequestCredential(std::optional<absl::string_view> authorization_header,
                             std::optional<absl::string_view> cookie_header) {
  if (authorization_header) return {std::string(*authorization_header), false};
  if (cookie_header) {
    if (auto token = CookieValue(*cookie_header, kSessionCookie); token && !token->empty()) {
      return {absl::StrCat("Bearer ", *token), true};
    }
  }
  return {};
}

bool IsCookieToken(absl::string_view token) {
  if (token.empty() || token.size() > 2048) return false;
  for (char c : token) {
    const bool ok = absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
                    c == '+' || c == '/' || c == '=' || c == ':' || c == '!' || c == '*';
    if (!ok) return false;
  }
  return true;
}

std::string SessionCookie(absl::string_view token, absl::Duration max_age, bool secure) {
  return absl::StrCat(kSessionCookie, "=", token, "; Path=/; Max-Age=",
                      absl::ToInt64Seconds(max_age), "; HttpOnly; SameSite=Strict",
                      secure ? "; Secure" : "");
}

}  // namespace jobstream::gateway
