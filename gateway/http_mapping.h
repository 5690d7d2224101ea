// The gateway's translations that need no I/O: gRPC code -> HTTP status (one table, as
// Google's API guidelines map them), error bodies in google.rpc.Status JSON form, proto3
// JSON both ways, and Server-Sent Events framing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/status.h"

namespace jobstream::gateway {

// HTTP status for a gRPC code.
int HttpStatusFor(grpc::StatusCode code);
// {"code": <gRPC code number>, "message": "...", "status": "NOT_FOUND"}
std::string ErrorJson(grpc::StatusCode code, absl::string_view message);

// Canonical proto3 JSON (lowerCamelCase), on one line.
std::string ToJson(const google::protobuf::Message& message);
// Parses proto3 JSON into `message`; unknown fields are an error (typos fail loudly).
absl::Status FromJson(absl::string_view json, google::protobuf::Message* message);

// One SSE event: optional id and event lines, then `data` split into one data line per
// line of it (a bare \r, \n or \r\n each end a line), then a blank line.
std::string SseEvent(absl::string_view id, absl::string_view event, absl::string_view data);
// A comment line (keeps proxies from timing out an idle stream).
std::string SseComment(absl::string_view text);
// "retry: N" telling EventSource how long to wait before reconnecting.
std::string SseRetry(int milliseconds);

// The sequence to resume after, from a Last-Event-ID header (a sequence, or
// "jobId:sequence" as /v1/events sends) or else ?after=. nullopt when neither is given;
// INVALID_ARGUMENT when one is not a non-negative integer.
absl::StatusOr<std::optional<int64_t>> ResumeAfter(std::optional<absl::string_view> last_event_id,
                                                   std::optional<absl::string_view> after_param);

// A Range header (RFC 9110) against a representation of `size` bytes. One range is
// served; several, or a unit other than bytes, or a malformed header get the whole (a
// server may ignore Range).
struct RangeRequest {
  enum Kind { kWhole, kPartial, kUnsatisfiable } kind = kWhole;
  int64_t first = 0;  // kPartial: first and last byte, inclusive
  int64_t last = 0;
};
RangeRequest ParseRange(std::optional<absl::string_view> header, int64_t size);

// Whether an If-None-Match (or If-Range) value names `etag` (a quoted strong ETag).
// "*" matches any; weak forms W/"…" compare by their opaque part, as If-None-Match does.
bool EtagMatches(absl::string_view header, absl::string_view etag);

// Content-Disposition for serving `filename`: inline or attachment, with an ASCII
// fallback name and the exact name as RFC 8187 UTF-8.
std::string ContentDisposition(bool attachment, absl::string_view filename);

// Seconds a poller should wait before asking about an unfinished job again: for a
// running job, what its progress rate so far says is left; for a queued one, until it
// may start. At least 1, at most 30 (progress rates are rough).
int RetryAfterSeconds(const v1::Job& job, absl::Time now);

// The request path of a job's artifact, its name percent-encoded as one segment.
std::string ArtifactPath(absl::string_view job_id, absl::string_view name);

// The cookie POST /v1/session sets, holding the caller's token for EventSource (which
// cannot send headers). HttpOnly: the page's scripts never see it.
inline constexpr absl::string_view kSessionCookie = "jobstream_token";

// A cookie's value from a Cookie header ("a=1; b=2"), if it is there.
std::optional<std::string> CookieValue(absl::string_view cookie_header, absl::string_view name);

// What a request presents, forwarded upstream as `authorization` metadata: its
// Authorization header as sent, else "Bearer <the session cookie>"; empty if neither.
struct Credential {
  std::string authorization;
  bool from_cookie = false;
};
Credential RequestCredential(std::optional<absl::string_view> authorization_header,
                             std::optional<absl::string_view> cookie_header);

// Whether a token can be kept in a cookie as it is (RFC 6265 cookie-octets, no quoting).
bool IsCookieToken(absl::string_view token);
// The Set-Cookie value that keeps `token` (empty with max_age 0: the cookie is removed).
std::string SessionCookie(absl::string_view token, absl::Duration max_age, bool secure);

}  // namespace jobstream::gateway
