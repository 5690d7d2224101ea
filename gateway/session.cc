#include "gateway/session.h"

#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/log.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/routes.h"
#include "gateway/websocket_session.h"

namespace jobstream::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

Session::Session(net::ip::tcp::socket socket, Gateway* gateway)
    : stream_(std::move(socket), gateway->tls_context()),
      gateway_(gateway),
      heartbeat_(stream_.get_executor()) {
  ++gateway_->metrics().connections_open;
  ++gateway_->metrics().connections_total;
}

Session::~Session() { --gateway_->metrics().connections_open; }

void Session::Start() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    // Over TLS, the handshake first, under the same deadline as a request.
    self->stream_.tcp().expires_after(
        absl::ToChronoMilliseconds(self->gateway_->options().request_timeout));
    self->stream_.async_handshake([self](beast::error_code ec) {
      if (ec) return self->CloseNow();
      self->Read();
    });
  });
}

void Session::Close() {
  net::post(stream_.get_executor(), [self = shared_from_this()] { self->CloseNow(); });
}

void Session::CloseNow() {
  if (closed_) return;
  closed_ = true;
  heartbeat_.cancel();
  if (sse_) {
    --gateway_->metrics().sse_streams_open;
    if (sse_->leave) std::exchange(sse_->leave, nullptr)();
  }
  if (on_close_) std::exchange(on_close_, nullptr)();
  beast::error_code ignored;
  stream_.tcp().socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  stream_.tcp().close();
  gateway_->Unregister(this);
}

std::optional<std::string> Session::Header(beast::string_view name) const {
  auto it = request_.find(name);
  if (it == request_.end()) return std::nullopt;
  return std::string(it->value());
}

std::optional<std::string> Session::Header(http::field name) const {
  auto it = request_.find(name);
  if (it == request_.end()) return std::nullopt;
  return std::string(it->value());
}

// ---------------------------------------------------------------------------------------
// Requests

void Session::Read() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(gateway_->options().max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(gateway_->options().max_header_bytes));
  // The whole request must arrive in time: a slow client holds only its own connection.
  stream_.tcp().expires_after(absl::ToChronoMilliseconds(gateway_->options().request_timeout));
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void Session::OnRead(beast::error_code ec) {
  if (!ec) {
    request_ = parser_->release();
    return Dispatch();
  }
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset ||
      ec == net::error::eof) {
    return CloseNow();
  }
  // A malformed or oversized request: say so, then close (the stream may be out of step).
  keep_alive_ = false;
  if (parser_->is_header_done()) version_ = parser_->get().version();
  if (ec == http::error::body_limit) {
    return Reply({413, ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("request body is over the limit of ",
                                              gateway_->options().max_body_bytes, " bytes"))});
  }
  if (ec == http::error::header_limit) {
    return Reply({431, ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("request headers are over the limit of ",
                                              gateway_->options().max_header_bytes, " bytes"))});
  }
  Reply({400, ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("malformed HTTP request: ", ec.message()))});
}

std::string Session::CorsOrigin() const {
  const auto& allowed = gateway_->options().cors_origins;
  if (origin_.empty()) return "";
  if (allowed.count("*")) return "*";
  return allowed.count(origin_) ? origin_ : "";
}

void Session::LogRequest(int status) {
  if (!logs::Enabled() || request_start_ == absl::InfinitePast()) return;
  const absl::string_view target(request_.target().data(), request_.target().size());
  logs::Line line("http");
  line.Add("method", absl::string_view(request_.method_string().data(),
                                       request_.method_string().size()))
      .Add("path", target.substr(0, target.find('?')))  // a query may hold anything
      .Add("status", int64_t{status})
      .Add("auth", credential_.authorization.empty() ? "none"
                   : credential_.from_cookie         ? "cookie"
                                                     : "header")
      .Add("ms", absl::ToDoubleMilliseconds(absl::Now() - request_start_));
  request_start_ = absl::InfinitePast();  // one line per request
}

void Session::Dispatch() {
  ++gateway_->metrics().requests_total;
  request_start_ = absl::Now();
  version_ = request_.version();
  keep_alive_ = request_.keep_alive();
  origin_ = Header(http::field::origin).value_or("");
  if (request_.method() == http::verb::options) return Reply({204});  // CORS preflight
  const auto authorization = Header(http::field::authorization);
  const auto cookie = Header(http::field::cookie);
  credential_ = RequestCredential(authorization, cookie);
  auto parsed = ParseRoute(
      absl::string_view(request_.method_string().data(), request_.method_string().size()),
      absl::string_view(request_.target().data(), request_.target().size()));
  if (auto* error = std::get_if<RouteError>(&parsed)) {
    const grpc::StatusCode code = error->http_status == 404   ? grpc::StatusCode::NOT_FOUND
                                  : error->http_status == 405 ? grpc::StatusCode::UNIMPLEMENTED
                                                              : grpc::StatusCode::INVALID_ARGUMENT;
    Response response{error->http_status, ErrorJson(code, error->message)};
    if (!error->allow.empty()) response.headers.emplace_back("Allow", error->allow);
    return Reply(std::move(response));
  }
  const Route& route = std::get<Route>(parsed);
  const bool websocket = route.kind == RouteKind::kJobWs || route.kind == RouteKind::kAllWs;
  // A cookie rides along on any request the browser makes, a WebSocket handshake included,
  // so one that changes something or opens a WebSocket must come from a page of this
  // gateway (SameSite=Strict says the same, for browsers that honour it).
  const bool safe = request_.method() == http::verb::get || request_.method() == http::verb::head;
  if (credential_.from_cookie && (!safe || websocket) && !origin_.empty() && !SameOrigin()) {
    return ReplyError(grpc::StatusCode::PERMISSION_DENIED,
                      "a request from another origin (" + origin_ +
                          ") may not use the session cookie; send an Authorization header");
  }
  const bool submit_and_stream =
      route.kind == RouteKind::kSubmit &&
      absl::StrContains(Header(http::field::accept).value_or(""), "text/event-stream");
  const bool stream = websocket || submit_and_stream || route.kind == RouteKind::kJobEvents ||
                      route.kind == RouteKind::kAllEvents;
  const int64_t streams =
      gateway_->metrics().sse_streams_open.load() + gateway_->metrics().websockets_open.load();
  if (stream && streams >= static_cast<int64_t>(gateway_->options().max_streams)) {
    return ReplyStatus(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the gateway has ", streams, " open streams, the limit (--max_streams)")));
  }
  SessionPtr self = shared_from_this();
  switch (route.kind) {
    case RouteKind::kSubmit: return submit_and_stream ? SubmitAndStream(self) : Submit(self);
    case RouteKind::kSubmitBatch: return SubmitBatch(self);
    case RouteKind::kBulkCancel:
    case RouteKind::kBulkRetry:
    case RouteKind::kBulkDelete: return BulkJobs(self, route.kind);
    case RouteKind::kListJobs: return ListJobs(self, route);
    case RouteKind::kListTypes: return ListTypes(self);
    case RouteKind::kJobStats: return JobStats(self);
    case RouteKind::kPauseType:
    case RouteKind::kResumeType: return PauseType(self, route);
    case RouteKind::kListSchedules:
    case RouteKind::kCreateSchedule:
    case RouteKind::kGetSchedule:
    case RouteKind::kUpdateSchedule:
    case RouteKind::kDeleteSchedule:
    case RouteKind::kPauseSchedule:
    case RouteKind::kResumeSchedule:
    case RouteKind::kTriggerSchedule: return ScheduleRoute(self, route);
    case RouteKind::kGetJob: return GetJob(self, route.job_id);
    case RouteKind::kDeleteJob: return DeleteJob(self, route.job_id);
    case RouteKind::kCancelJob: return CancelJob(self, route.job_id);
    case RouteKind::kRetryJob: return RetryJob(self, route.job_id);
    case RouteKind::kWaitJob: return WaitJob(self, route);
    case RouteKind::kJobResult: return JobResult(self, route.job_id);
    case RouteKind::kArtifact: return GetArtifact(self, route);
    case RouteKind::kJobEvents: return JobEvents(self, route);
    case RouteKind::kAllEvents: return AllEvents(self, route);
    case RouteKind::kJobWs:
    case RouteKind::kAllWs: return UpgradeToWebSocket(route);
    case RouteKind::kHealth: return Health(self);
    case RouteKind::kSession: return SessionRoute(self, route);
    case RouteKind::kMetrics:
      return Reply({200, gateway_->metrics().Render(), "text/plain; version=0.0.4"});
    case RouteKind::kAsset: return Asset(self, route.asset);
  }
}

void Session::UpgradeToWebSocket(const Route& route) {
  if (!boost::beast::websocket::is_upgrade(request_)) {
    return Reply({426,
                  ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                            "this is a WebSocket endpoint: connect with Upgrade: websocket "
                            "(or use the SSE stream)"),
                  "application/json", {{"Upgrade", "websocket"}}});
  }
  // The socket moves to a WebSocket session; this one is done without closing it.
  closed_ = true;
  heartbeat_.cancel();
  stream_.tcp().expires_never();  // the WebSocket stream keeps its own timeouts
  auto ws = std::make_shared<WebSocketSession>(std::move(stream_), gateway_,
                                               std::move(request_), route, credential_);
  gateway_->Register(ws);
  gateway_->Unregister(this);
  ws->Start();
}

bool Session::SameOrigin() const {
  const std::string host = Header(http::field::host).value_or("");
  absl::string_view origin = origin_;
  if (!absl::ConsumePrefix(&origin, "http://")) absl::ConsumePrefix(&origin, "https://");
  return !host.empty() && origin == host;
}

void Session::AddCommonHeaders(http::fields& fields) const {
  fields.set(http::field::server, "jobstream-gateway");
  if (const std::string cors = CorsOrigin(); !cors.empty()) {
    fields.set(http::field::access_control_allow_origin, cors);
    fields.set(http::field::vary, "Origin");
    fields.set(http::field::access_control_expose_headers,
               "Location, Retry-After, ETag, Content-Range, Content-Disposition");
    fields.set(http::field::access_control_allow_methods, "GET, HEAD, POST, DELETE, OPTIONS");
    fields.set(http::field::access_control_allow_headers,
               "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, Range, "
               "If-None-Match, If-Range");
  }
}

void Session::Reply(Response r) {
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(r.status), version_);
  AddCommonHeaders(*res);
  res->set(http::field::cache_control, "no-store");
  for (auto& [name, value] : r.headers) res->set(name, value);  // may replace the above
  if (!r.body.empty() || r.length_without_body) {
    res->set(http::field::content_type, r.content_type);
  }
  res->body() = std::move(r.body);
  res->keep_alive(keep_alive_);
  if (keep_alive_) {
    // The idle limit, so clients stop reusing the connection before the gateway closes it
    // (a request sent on a connection being closed would fail).
    res->set("Keep-Alive",
             absl::StrCat("timeout=",
                          absl::ToInt64Seconds(gateway_->options().request_timeout)));
  }
  res->prepare_payload();
  if (r.length_without_body) res->content_length(*r.length_without_body);
  if (r.status >= 500) ++gateway_->metrics().responses_5xx;
  else if (r.status >= 400) ++gateway_->metrics().responses_4xx;
  LogRequest(r.status);
  if (r.length_without_body) {
    // HEAD or 304: the header says how long the body would be, and none follows.
    auto sr = std::make_shared<http::response_serializer<http::string_body>>(*res);
    http::async_write_header(stream_, *sr,
                             [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
                               self->OnWritten(res->keep_alive(), ec);
                             });
    return;
  }
  http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
    self->OnWritten(res->keep_alive(), ec);
  });
}

void Session::ReplyError(grpc::StatusCode code, const std::string& message, Headers headers) {
  if (code == grpc::StatusCode::UNAUTHENTICATED) {
    headers.emplace_back("WWW-Authenticate", "Bearer realm=\"jobstream\"");
  }
  Reply({HttpStatusFor(code), ErrorJson(code, message), "application/json", std::move(headers)});
}

void Session::ReplyStatus(const grpc::Status& status, const std::string& retry_after) {
  Headers headers;
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    const bool valid = !retry_after.empty() && retry_after.size() < 8 &&
                       retry_after.find_first_not_of("0123456789") == std::string::npos;
    headers.emplace_back("Retry-After", valid ? retry_after : "1");
  }
  ReplyError(status.error_code(), status.error_message(), std::move(headers));
}

void Session::OnWritten(bool keep_alive, beast::error_code ec) {
  if (ec || !keep_alive) return CloseNow();
  Read();
}

// ---------------------------------------------------------------------------------------
// A streamed body

void Session::BeginBody(int status, const std::string& content_type, uint64_t length,
                        Headers headers, std::function<void()> ready) {
  body_.emplace();
  body_->remaining = length;
  stream_.tcp().expires_never();  // a slow reader is paced by TCP, not a deadline
  auto res = std::make_shared<http::response<http::empty_body>>(
      static_cast<http::status>(status), version_);
  AddCommonHeaders(*res);
  res->set(http::field::content_type, content_type);
  for (auto& [name, value] : headers) res->set(name, value);
  res->content_length(length);
  res->keep_alive(keep_alive_);
  if (status >= 400) ++gateway_->metrics().responses_4xx;
  LogRequest(status);
  auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
  http::async_write_header(stream_, *sr,
                           [self = shared_from_this(), res, sr, ready = std::move(ready)](
                               beast::error_code ec, size_t) {
                             if (ec) return self->CloseNow();
                             ready();
                           });
}

void Session::WriteBody(std::string data, std::function<void()> written) {
  if (!body_ || closed_ || body_->ending) return;
  if (data.size() > body_->remaining) return CloseNow();  // longer than announced
  body_->remaining -= data.size();
  body_->queue.emplace_back(std::move(data), std::move(written));
  BodyFlush();
}

void Session::EndBody() {
  if (!body_ || closed_) return;
  body_->ending = true;
  BodyFlush();
}

void Session::BodyFlush() {
  if (!body_ || closed_ || body_->writing) return;
  if (body_->queue.empty()) {
    if (!body_->ending) return;
    const bool whole = body_->remaining == 0;
    body_.reset();
    on_close_ = nullptr;
    // Short of its Content-Length, a body can only end with the connection, which tells
    // the client it was cut short. (A client that leaves mid-body is noticed by the next
    // write failing.)
    if (!whole || !keep_alive_) return CloseNow();
    return Read();
  }
  body_->writing = true;
  auto item = std::make_shared<std::pair<std::string, std::function<void()>>>(
      std::move(body_->queue.front()));
  body_->queue.pop_front();
  net::async_write(stream_, net::buffer(item->first),
                   [self = shared_from_this(), item](beast::error_code ec, size_t) {
                     if (ec) return self->CloseNow();
                     self->body_->writing = false;
                     if (item->second) item->second();
                     self->BodyFlush();
                   });
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events

void Session::BeginSse(int64_t after, bool many_jobs, Headers headers) {
  sse_.emplace();
  sse_->last_sent = after;
  sse_->many_jobs = many_jobs;
  sse_->writing = true;  // until the header is out
  ++gateway_->metrics().sse_streams_open;
  stream_.tcp().expires_never();
  LogRequest(200);
  auto res = std::make_shared<http::response<http::empty_body>>(http::status::ok, version_);
  AddCommonHeaders(*res);
  res->set(http::field::content_type, "text/event-stream");
  res->set(http::field::cache_control, "no-cache");
  res->set("X-Accel-Buffering", "no");
  for (auto& [name, value] : headers) res->set(name, value);
  // The connection closes when the stream ends; EventSource reconnects as needed.
  res->keep_alive(false);
  res->chunked(true);
  auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
  http::async_write_header(stream_, *sr,
                           [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
                             if (ec) return self->CloseNow();
                             self->sse_->writing = false;
                             self->SseFlush();
                           });
  auto retry = std::make_shared<SseChunk>();
  retry->text = SseRetry(gateway_->options().sse_retry_ms);
  SseWrite(std::move(retry));
  ArmHeartbeat();
  WatchForClose();
}

void Session::Deliver(SseChunkPtr chunk) {
  Post([this, chunk = std::move(chunk)] { SseDeliver(chunk); });
}

void Session::StreamStarted(std::function<void()> leave) {
  Post([this, leave = std::move(leave)]() mutable {
    BeginSse(0, /*many_jobs=*/true);
    SetLeave(std::move(leave));
  });
}

void Session::StreamRefused(const grpc::Status& status) {
  Post([this, status] { ReplyStatus(status); });
}

void Session::FeedEnded() {
  // The server is gone too long or the job was removed: end the response; EventSource
  // reconnects with Last-Event-ID and finds out.
  Post([this] { SseEnd(); });
}

void Session::FeedFinished() {
  // Said in the stream, so an EventSource knows to stop rather than reconnect (no id: the
  // client's Last-Event-ID stays the job's last event).
  Post([this] {
    if (!sse_ || sse_->ending) return;
    auto end = std::make_shared<SseChunk>();
    end->text = SseEvent("", "end", absl::StrCat(R"({"lastSequence":")", sse_->last_sent, R"("})"));
    SseWrite(std::move(end));
    SseEnd();
  });
}

void Session::SseDeliver(SseChunkPtr chunk) {
  if (!sse_ || sse_->ending) return;
  if (!sse_->many_jobs) {
    if (chunk->sequence <= sse_->last_sent) return;
    sse_->last_sent = chunk->sequence;
  }
  ++gateway_->metrics().sse_events_sent;
  SseWrite(std::move(chunk));
}

void Session::SseWrite(SseChunkPtr chunk) {
  if (!sse_ || closed_) return;
  auto& pending = sse_->pending;
  // A client that falls behind gets the newest progress instead of every one...
  if (chunk->progress && pending.size() >= kConflateAfter && pending.back()->progress) {
    pending.back() = std::move(chunk);
    return;
  }
  // ...and one still too slow is dropped; it resumes from its Last-Event-ID.
  if (pending.size() >= gateway_->options().sse_max_pending) return CloseNow();
  pending.push_back(std::move(chunk));
  SseFlush();
}

void Session::SseFlush() {
  if (!sse_ || closed_ || sse_->writing) return;
  if (sse_->pending.empty()) {
    if (!sse_->ending) return;
    sse_->writing = true;
    net::async_write(stream_, http::make_chunk_last(),
                     [self = shared_from_this()](beast::error_code, size_t) { self->CloseNow(); });
    return;
  }
  // Everything pending goes in one write: a burst (a resumed stream's replay) leaves at
  // once, so only a client whose socket is full keeps events pending long enough to have
  // its progress conflated.
  // (The session owns sse_ for its whole life, and the handler holds the session.)
  sse_->writing = true;
  constexpr size_t kMaxEventsPerWrite = 256;
  std::vector<net::const_buffer> buffers;
  while (!sse_->pending.empty() && sse_->in_flight.size() < kMaxEventsPerWrite) {
    buffers.push_back(net::buffer(sse_->pending.front()->text));
    sse_->in_flight.push_back(std::move(sse_->pending.front()));
    sse_->pending.pop_front();
  }
  net::async_write(stream_, http::make_chunk(buffers),
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     if (ec) return self->CloseNow();
                     self->sse_->in_flight.clear();
                     self->sse_->writing = false;
                     self->SseFlush();
                   });
}

void Session::SseEnd() {
  if (!sse_ || sse_->ending) return;
  sse_->ending = true;
  heartbeat_.cancel();
  SseFlush();
}

void Session::ArmHeartbeat() {
  heartbeat_.expires_after(absl::ToChronoMilliseconds(gateway_->options().heartbeat));
  heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->closed_ || !self->sse_ || self->sse_->ending) return;
    if (self->sse_->pending.empty()) {
      auto comment = std::make_shared<SseChunk>();
      comment->text = SseComment("keepalive");
      self->SseWrite(std::move(comment));
    }
    self->ArmHeartbeat();
  });
}

void Session::WatchForClose() {
  // A client reading a stream sends nothing: a read that completes means it left.
  stream_.async_read_some(net::buffer(probe_),
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            if (ec) return self->CloseNow();
                            self->WatchForClose();
                          });
}

}  // namespace jobstream::gateway
