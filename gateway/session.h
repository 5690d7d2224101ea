// Session: one HTTP/1.1 connection. Everything it does runs on its strand: it reads one
// request (with size limits and a deadline, so a slow or hostile client only holds its
// own connection), hands it to the route's handler (handlers.h), writes the answer, and
// goes on with the next (keep-alive). Besides whole responses it can write a response
// body as it arrives (an artifact download) or turn into an SSE stream until the job
// ends. The handlers decide what to say; the session only how it goes on the wire.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "common/flex_stream.h"
#include "gateway/gateway.h"
#include "gateway/http_mapping.h"
#include "gateway/job_feed.h"
#include "gateway/routes.h"

namespace jobstream::gateway {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// A whole response. Headers common to every answer (Server, CORS, Keep-Alive) are added.
struct Response {
  Response(int status = 200, std::string body = "",
           std::string content_type = "application/json", Headers headers = {})
      : status(status), body(std::move(body)), content_type(std::move(content_type)),
        headers(std::move(headers)) {}
  int status;
  std::string body;
  std::string content_type;
  Headers headers;
  // Content-Length to announce without a body (a HEAD request, a 304).
  std::optional<uint64_t> length_without_body;
};

// A Session's state while it streams a body, or SSE. (Outside the class: clang cannot
// use a nested class's member initializers before the enclosing class is complete.)
struct SessionBody {
  uint64_t remaining = 0;  // bytes still to queue
  std::deque<std::pair<std::string, std::function<void()>>> queue;
  bool writing = false;
  bool ending = false;
};
struct SessionSse {
  int64_t last_sent = 0;   // one job's stream only
  bool many_jobs = false;  // /v1/events: ids are jobId:sequence, never deduplicated
  std::function<void()> leave;
  std::deque<SseChunkPtr> pending;
  std::vector<SseChunkPtr> in_flight;  // the chunks the write under way is sending
  bool writing = false;
  bool ending = false;  // the last chunk is queued
};

class Session : public Connection,
                public StreamSink,
                public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket socket, Gateway* gateway);
  ~Session();
  void Start();
  // From any thread: closes the connection (gateway shutdown).
  void Close() override;

  Gateway* gateway() const { return gateway_; }
  const Request& request() const { return request_; }
  // What the request presents, forwarded upstream with every call it makes.
  const Credential& credential() const { return credential_; }
  // A request header, if present.
  std::optional<std::string> Header(boost::beast::string_view name) const;
  std::optional<std::string> Header(boost::beast::http::field name) const;

  // Runs fn on this session's strand, unless the connection has closed by then. From any
  // thread (gRPC callbacks).
  template <typename Fn>
  void Post(Fn fn) {
    boost::asio::post(stream_.get_executor(),
                      [self = shared_from_this(), fn = std::move(fn)]() mutable {
                        if (!self->closed_) fn();
                      });
  }

  // Strand only, from here on.
  void Reply(Response response);
  void ReplyError(grpc::StatusCode code, const std::string& message, Headers headers = {});
  // A RESOURCE_EXHAUSTED answer (429) says when to retry: `retry_after` seconds, or 1.
  void ReplyStatus(const grpc::Status& status, const std::string& retry_after = "");

  // A streamed body of known length: the header goes out, then each WriteBody in order
  // (queued; `written` says when each is on the wire, so a producer can keep a few in
  // flight and no more), then EndBody once they are. A body cut short closes the
  // connection, so the client sees it was.
  void BeginBody(int status, const std::string& content_type, uint64_t length, Headers headers,
                 std::function<void()> ready);
  void WriteBody(std::string data, std::function<void()> written);
  void EndBody();
  // Called (on the strand) if the client goes away mid-body.
  void OnClose(std::function<void()> on_close) { on_close_ = std::move(on_close); }

  // Server-Sent Events: sends the stream's header; the stream then takes events through
  // Deliver until the terminal one (or SseEnd).
  void BeginSse(int64_t after, bool many_jobs, Headers headers = {});
  // What to do when the stream ends or the client leaves (leave the feed it reads).
  void SetLeave(std::function<void()> leave) { sse_->leave = std::move(leave); }
  void SseEnd();

  // StreamSink, from the feed's threads.
  void Deliver(SseChunkPtr chunk) override;
  void FeedEnded() override;
  void FeedFinished() override;
  void StreamStarted(std::function<void()> leave) override;
  void StreamRefused(const grpc::Status& status) override;

 private:
  void Read();
  void OnRead(boost::beast::error_code ec);
  void Dispatch();
  void BodyFlush();
  void UpgradeToWebSocket(const Route& route);
  void AddCommonHeaders(boost::beast::http::fields& fields) const;
  void OnWritten(bool keep_alive, boost::beast::error_code ec);
  void CloseNow();
  std::string CorsOrigin() const;
  // The request's log line, once its response starts.
  void LogRequest(int status);
  // Whether the Origin header names this gateway (its host and port, as Host says).
  bool SameOrigin() const;

  void SseDeliver(SseChunkPtr chunk);
  void SseWrite(SseChunkPtr chunk);
  void SseFlush();
  void ArmHeartbeat();
  void WatchForClose();

  FlexStream stream_;
  Gateway* const gateway_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  Request request_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  std::string origin_;  // the request's Origin header
  Credential credential_;
  absl::Time request_start_ = absl::InfinitePast();
  bool closed_ = false;
  std::function<void()> on_close_;

  // A streamed body (strand only).
  std::optional<SessionBody> body_;

  // SSE state (strand only).
  std::optional<SessionSse> sse_;
  boost::asio::steady_timer heartbeat_;
  std::array<char, 512> probe_;  // reads while streaming only to notice a closed connection
};

using SessionPtr = std::shared_ptr<Session>;

}  // namespace jobstream::gateway
