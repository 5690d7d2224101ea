#include "gateway/session.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "gateway/http_mapping.h"
#include "jobstream/v1/job_states.h"
#include "gateway/web_assets.h"

namespace jobstream::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

namespace {

template <typename Req, typename Resp>
struct UnaryCall {
  grpc::ClientContext ctx;
  Req request;
  Resp response;
};

template <typename Req, typename Resp>
std::shared_ptr<UnaryCall<Req, Resp>> NewCall(absl::Duration timeout) {
  auto call = std::make_shared<UnaryCall<Req, Resp>>();
  call->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return call;
}

// A client with this many unsent chunks is behind: its PROGRESS chunks conflate.
constexpr size_t kConflateAfter = 16;

template <typename Key>
std::optional<absl::string_view> Header(const http::request<http::string_body>& req, Key key) {
  auto it = req.find(key);
  if (it == req.end()) return std::nullopt;
  return absl::string_view(it->value().data(), it->value().size());
}

}  // namespace

Session::Session(net::ip::tcp::socket socket, Gateway* gateway)
    : stream_(std::move(socket)),
      gateway_(gateway),
      heartbeat_(stream_.get_executor()) {
  ++gateway_->metrics().connections_open;
  ++gateway_->metrics().connections_total;
}

Session::~Session() { --gateway_->metrics().connections_open; }

void Session::Start() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
}

void Session::Close() {
  net::post(stream_.get_executor(), [self = shared_from_this()] { self->CloseNow(); });
}

template <typename Fn>
void Session::Post(Fn fn) {
  net::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
    if (!self->closed_) fn();
  });
}

void Session::CloseNow() {
  if (closed_) return;
  closed_ = true;
  heartbeat_.cancel();
  if (sse_) {
    --gateway_->metrics().sse_streams_open;
    if (sse_->feed) sse_->feed->Leave(this);
    if (sse_->upstream) sse_->upstream->Cancel();
  }
  beast::error_code ignored;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  stream_.close();
  gateway_->Unregister(this);
}

// ---------------------------------------------------------------------------------------
// Requests

void Session::Read() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(gateway_->options().max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(gateway_->options().max_header_bytes));
  // The whole request must arrive in time: a slow client holds only its own connection.
  stream_.expires_after(absl::ToChronoMilliseconds(gateway_->options().request_timeout));
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void Session::OnRead(beast::error_code ec) {
  if (!ec) return Dispatch(parser_->release());
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset ||
      ec == net::error::eof) {
    return CloseNow();
  }
  // A malformed or oversized request: say so, then close (the stream may be out of step).
  keep_alive_ = false;
  if (parser_->is_header_done()) version_ = parser_->get().version();
  if (ec == http::error::body_limit) {
    return Reply(413, ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StrCat("request body is over the limit of ",
                                             gateway_->options().max_body_bytes, " bytes")));
  }
  if (ec == http::error::header_limit) {
    return Reply(431, ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StrCat("request headers are over the limit of ",
                                             gateway_->options().max_header_bytes, " bytes")));
  }
  Reply(400, ErrorJson(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("malformed HTTP request: ", ec.message())));
}

std::string Session::CorsOrigin() const {
  const auto& allowed = gateway_->options().cors_origins;
  if (origin_.empty()) return "";
  if (allowed.count("*")) return "*";
  return allowed.count(origin_) ? origin_ : "";
}

void Session::Dispatch(Request request) {
  ++gateway_->metrics().requests_total;
  version_ = request.version();
  keep_alive_ = request.keep_alive();
  origin_ = std::string(Header(request, http::field::origin).value_or(""));
  if (request.method() == http::verb::options) {  // CORS preflight
    return Reply(204, "");
  }
  auto parsed = ParseRoute(absl::string_view(request.method_string().data(),
                                             request.method_string().size()),
                           absl::string_view(request.target().data(), request.target().size()));
  if (auto* error = std::get_if<RouteError>(&parsed)) {
    const grpc::StatusCode code = error->http_status == 404   ? grpc::StatusCode::NOT_FOUND
                                  : error->http_status == 405 ? grpc::StatusCode::UNIMPLEMENTED
                                                              : grpc::StatusCode::INVALID_ARGUMENT;
    return Reply(error->http_status, ErrorJson(code, error->message), "application/json", "",
                 error->allow);
  }
  const Route& route = std::get<Route>(parsed);
  switch (route.kind) {
    case RouteKind::kSubmit: return Submit(request);
    case RouteKind::kListJobs: return ListJobs(route);
    case RouteKind::kListTypes: return ListTypes();
    case RouteKind::kGetJob: return GetJob(route.job_id);
    case RouteKind::kDeleteJob: return DeleteJob(route.job_id);
    case RouteKind::kCancelJob: return CancelJob(route.job_id);
    case RouteKind::kHealth: return Health();
    case RouteKind::kMetrics:
      return Reply(200, gateway_->metrics().Render(), "text/plain; version=0.0.4");
    case RouteKind::kJobEvents: {
      auto after = ResumeAfter(Header(request, "Last-Event-ID"), route.Param("after"));
      if (!after.ok()) return ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                                         std::string(after.status().message()));
      return StartJobEvents(route.job_id, after->value_or(0));
    }
    case RouteKind::kAllEvents:
      return StartAllEvents(route);
    case RouteKind::kAsset: {
      const WebAsset* asset = FindWebAsset(route.asset);
      if (asset == nullptr) return ReplyError(grpc::StatusCode::NOT_FOUND, "no such file");
      return Reply(200, std::string(reinterpret_cast<const char*>(asset->data), asset->size),
                   asset->content_type);
    }
  }
}

void Session::Reply(int status, std::string body, const std::string& content_type,
                    const std::string& location, const std::string& allow) {
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(status), version_);
  res->set(http::field::server, "jobstream-gateway");
  res->set(http::field::cache_control, "no-store");
  if (!body.empty()) res->set(http::field::content_type, content_type);
  if (!location.empty()) res->set(http::field::location, location);
  if (!allow.empty()) res->set(http::field::allow, allow);
  if (const std::string cors = CorsOrigin(); !cors.empty()) {
    res->set(http::field::access_control_allow_origin, cors);
    res->set(http::field::vary, "Origin");
    res->set(http::field::access_control_expose_headers, "Location");
    res->set(http::field::access_control_allow_methods, "GET, POST, DELETE, OPTIONS");
    res->set(http::field::access_control_allow_headers,
             "Content-Type, Idempotency-Key, Last-Event-ID");
  }
  res->body() = std::move(body);
  res->keep_alive(keep_alive_);
  if (keep_alive_) {
    // The idle limit, so clients stop reusing the connection before the gateway closes it
    // (a request sent on a connection being closed would fail).
    res->set("Keep-Alive",
             absl::StrCat("timeout=",
                          absl::ToInt64Seconds(gateway_->options().request_timeout)));
  }
  res->prepare_payload();
  if (status >= 500) ++gateway_->metrics().responses_5xx;
  else if (status >= 400) ++gateway_->metrics().responses_4xx;
  http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
    self->OnWritten(res->keep_alive(), ec);
  });
}

void Session::ReplyError(grpc::StatusCode code, const std::string& message) {
  Reply(HttpStatusFor(code), ErrorJson(code, message));
}

void Session::ReplyStatus(const grpc::Status& status) {
  ReplyError(status.error_code(), status.error_message());
}

void Session::OnWritten(bool keep_alive, beast::error_code ec) {
  if (ec || !keep_alive) return CloseNow();
  Read();
}

// ---------------------------------------------------------------------------------------
// REST

template <typename Call, typename Issue, typename OnOk>
void Session::Forward(std::shared_ptr<Call> call, Issue issue, OnOk on_ok) {
  issue(&call->ctx, &call->request, &call->response,
        [this, self = shared_from_this(), call, on_ok](grpc::Status s) {
          Post([this, call, s, on_ok] {
            if (!s.ok()) return ReplyStatus(s);
            on_ok(call->response);
          });
        });
}

void Session::Submit(const Request& request) {
  auto call = NewCall<v1::SubmitRequest, v1::Job>(gateway_->options().call_timeout);
  if (absl::Status s = FromJson(absl::string_view(request.body()), &call->request); !s.ok()) {
    return ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
  }
  auto it = request.find("Idempotency-Key");
  if (it != request.end()) {
    const std::string key(it->value());
    if (!call->request.request_id().empty() && call->request.request_id() != key) {
      return ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                        "the Idempotency-Key header and the body's requestId differ");
    }
    call->request.set_request_id(key);
  }
  Forward(call, [this](auto... a) { gateway_->stub()->async()->Submit(a...); },
          [this](const v1::Job& job) {
            Reply(202, ToJson(job), "application/json", "/v1/jobs/" + job.id());
          });
}

void Session::GetJob(const std::string& job_id) {
  auto call = NewCall<v1::GetStatusRequest, v1::Job>(gateway_->options().call_timeout);
  call->request.set_job_id(job_id);
  Forward(call, [this](auto... a) { gateway_->stub()->async()->GetStatus(a...); },
          [this](const auto& response) { Reply(200, ToJson(response)); });
}

void Session::ListJobs(const Route& route) {
  auto call = NewCall<v1::ListJobsRequest, v1::ListJobsResponse>(gateway_->options().call_timeout);
  for (const std::string& value : route.Params("state")) {
    for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      v1::Job::State state;
      if (!v1::Job::State_Parse(absl::AsciiStrToUpper(name), &state) ||
          state == v1::Job::STATE_UNSPECIFIED) {
        return ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("state \"", name.substr(0, 40),
                                       "\" is not one of QUEUED, RUNNING, SUCCEEDED, FAILED, "
                                       "CANCELLED"));
      }
      call->request.add_states(state);
    }
  }
  call->request.set_type(route.Param("type").value_or(""));
  for (const std::string& label : route.Params("label")) {
    std::vector<std::string> kv = absl::StrSplit(label, absl::MaxSplits(':', 1));
    if (kv.size() != 2) {
      return ReplyError(grpc::StatusCode::INVALID_ARGUMENT, "label takes key:value");
    }
    (*call->request.mutable_labels())[kv[0]] = kv[1];
  }
  if (auto size = route.Param("pageSize")) {
    int page_size;
    if (!absl::SimpleAtoi(*size, &page_size)) {
      return ReplyError(grpc::StatusCode::INVALID_ARGUMENT, "pageSize must be an integer");
    }
    call->request.set_page_size(page_size);
  }
  call->request.set_page_token(route.Param("pageToken").value_or(""));
  Forward(call, [this](auto... a) { gateway_->stub()->async()->ListJobs(a...); },
          [this](const auto& response) { Reply(200, ToJson(response)); });
}

void Session::ListTypes() {
  auto call = NewCall<v1::ListJobTypesRequest, v1::ListJobTypesResponse>(
      gateway_->options().call_timeout);
  Forward(call, [this](auto... a) { gateway_->stub()->async()->ListJobTypes(a...); },
          [this](const auto& response) { Reply(200, ToJson(response)); });
}

void Session::CancelJob(const std::string& job_id) {
  auto call = NewCall<v1::CancelJobRequest, v1::Job>(gateway_->options().call_timeout);
  call->request.set_job_id(job_id);
  Forward(call, [this](auto... a) { gateway_->stub()->async()->CancelJob(a...); },
          [this](const auto& response) { Reply(200, ToJson(response)); });
}

void Session::DeleteJob(const std::string& job_id) {
  auto call =
      NewCall<v1::DeleteJobRequest, v1::DeleteJobResponse>(gateway_->options().call_timeout);
  call->request.set_job_id(job_id);
  Forward(call, [this](auto... a) { gateway_->stub()->async()->DeleteJob(a...); },
          [this](const auto&) { Reply(204, ""); });
}

void Session::Health() {
  // A cheap real call: the gateway is healthy when the server answers.
  auto call = NewCall<v1::ListJobsRequest, v1::ListJobsResponse>(absl::Seconds(2));
  call->request.set_page_size(1);
  gateway_->stub()->async()->ListJobs(
      &call->ctx, &call->request, &call->response, [this, self = shared_from_this(), call](grpc::Status s) {
        Post([this, s] {
          if (s.ok()) return Reply(200, R"({"status":"SERVING"})");
          Reply(503, ErrorJson(grpc::StatusCode::UNAVAILABLE,
                               "jobstream-server is not answering: " + s.error_message()));
        });
      });
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events

void Session::StartJobEvents(const std::string& job_id, int64_t after) {
  // Look first, so an unknown job is a 404 and a finished one read to its end is a 204
  // (which tells EventSource to stop), not an empty stream.
  auto call = NewCall<v1::GetStatusRequest, v1::Job>(gateway_->options().call_timeout);
  call->request.set_job_id(job_id);
  Forward(call, [this](auto... a) { gateway_->stub()->async()->GetStatus(a...); },
          [this, after](const v1::Job& job) {
            if (v1::IsFinished(job.state()) && after >= job.last_sequence()) return Reply(204, "");
            if (after > job.last_sequence()) {
              return ReplyError(grpc::StatusCode::OUT_OF_RANGE,
                                absl::StrCat("after ", after, " is beyond job ", job.id(),
                                             "'s last sequence ", job.last_sequence()));
            }
            BeginSse(after, /*many_jobs=*/false);
            sse_->feed = gateway_->JoinFeed(job.id(), after, shared_from_this());
          });
}

void Session::BeginSse(int64_t after, bool many_jobs) {
  sse_.emplace();
  sse_->last_sent = after;
  sse_->many_jobs = many_jobs;
  sse_->writing = true;  // until the header is out
  ++gateway_->metrics().sse_streams_open;
  stream_.expires_never();
  auto res = std::make_shared<http::response<http::empty_body>>(http::status::ok, version_);
  res->set(http::field::server, "jobstream-gateway");
  res->set(http::field::content_type, "text/event-stream");
  res->set(http::field::cache_control, "no-cache");
  res->set("X-Accel-Buffering", "no");
  if (const std::string cors = CorsOrigin(); !cors.empty()) {
    res->set(http::field::access_control_allow_origin, cors);
    res->set(http::field::vary, "Origin");
  }
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

void Session::StartAllEvents(const Route& route) {
  v1::WatchJobsRequest request;
  for (const std::string& type : route.Params("type")) request.add_types(type);
  for (const std::string& label : route.Params("label")) {
    std::vector<std::string> kv = absl::StrSplit(label, absl::MaxSplits(':', 1));
    if (kv.size() != 2) {
      return ReplyError(grpc::StatusCode::INVALID_ARGUMENT, "label takes key:value");
    }
    (*request.mutable_labels())[kv[0]] = kv[1];
  }
  BeginSse(0, /*many_jobs=*/true);
  ++gateway_->metrics().upstream_streams_open;
  sse_->upstream = UpstreamWatch::StartAll(
      gateway_->stub(), request,
      [self = shared_from_this()](const v1::JobEvent& event) {
        // ids are "jobId:sequence": one stream carries many jobs' sequences.
        auto chunk = std::make_shared<SseChunk>();
        chunk->progress = event.type() == v1::JobEvent::PROGRESS;
        chunk->text = SseEvent(absl::StrCat(event.job_id(), ":", event.sequence()),
                               absl::AsciiStrToLower(v1::JobEvent::Type_Name(event.type())),
                               ToJson(event));
        self->Deliver(std::move(chunk));
      },
      [self = shared_from_this()](const grpc::Status& status) {
        --self->gateway_->metrics().upstream_streams_open;
        // A bad filter is an error event the page can show; any other end just ends the
        // response, and EventSource reconnects to a fresh snapshot.
        if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          auto chunk = std::make_shared<SseChunk>();
          chunk->text = SseEvent("", "error", ErrorJson(status.error_code(), status.error_message()));
          self->Deliver(std::move(chunk));
        }
        self->FeedEnded();
      });
}

void Session::Deliver(SseChunkPtr chunk) {
  Post([this, chunk = std::move(chunk)] { SseDeliver(chunk); });
}

void Session::FeedEnded() {
  // The server is gone too long or the job was removed: end the response; EventSource
  // reconnects with Last-Event-ID and finds out.
  Post([this] { SseEnd(); });
}

void Session::SseDeliver(SseChunkPtr chunk) {
  if (!sse_ || sse_->ending) return;
  if (!sse_->many_jobs) {
    if (chunk->sequence <= sse_->last_sent) return;
    sse_->last_sent = chunk->sequence;
  }
  ++gateway_->metrics().sse_events_sent;
  const bool terminal = chunk->terminal;
  SseWrite(std::move(chunk));
  if (terminal) SseEnd();
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
  sse_->writing = true;
  SseChunkPtr data = std::move(sse_->pending.front());
  sse_->pending.pop_front();
  net::async_write(stream_, http::make_chunk(net::buffer(data->text)),
                   [self = shared_from_this(), data](beast::error_code ec, size_t) {
                     if (ec) return self->CloseNow();
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
  // EventSource sends nothing while it listens: a read that completes means it left.
  stream_.socket().async_read_some(net::buffer(probe_),
                                   [self = shared_from_this()](beast::error_code ec, size_t) {
                                     if (ec) return self->CloseNow();
                                     self->WatchForClose();
                                   });
}

}  // namespace jobstream::gateway
