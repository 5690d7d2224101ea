// WebSocketSession: GET /v1/jobs/{id}/ws and /v1/ws, the same events as the SSE streams,
// one JSON text message each (Beast's WebSocket). A job's stream resumes after ?after=N
// and ends with a normal close after the terminal event; /v1/ws shares the /v1/events
// feed of its filter. Until the upgrade, a refusal is a plain HTTP error (404, 400). Pings
// keep an idle connection alive and find dead ones; the client is not expected to send
// anything, and one that does is closed with 1003 (binary) or 1008 (text).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/websocket.hpp"
#include "common/flex_stream.h"
#include "gateway/gateway.h"
#include "gateway/http_mapping.h"
#include "gateway/job_feed.h"
#include "gateway/routes.h"

namespace jobstream::gateway {

class WebSocketSession : public Connection,
                         public StreamSink,
                         public std::enable_shared_from_this<WebSocketSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  // Takes over the connection an HTTP session read the upgrade request on.
  WebSocketSession(FlexStream stream, Gateway* gateway, Request request, Route route,
                   Credential credential);
  ~WebSocketSession();
  void Start();
  void Close() override;

  // StreamSink, from the feeds' threads.
  void Deliver(SseChunkPtr chunk) override;
  void FeedEnded() override;
  void FeedFinished() override;
  void StreamStarted(std::function<void()> leave) override;
  void StreamRefused(const grpc::Status& status) override;

 private:
  template <typename Fn>
  void Post(Fn fn);
  void StartJob(int64_t after);
  // Before the upgrade: a plain HTTP answer, then the connection closes.
  void Refuse(const grpc::Status& status);
  void Accept(std::function<void()> then);
  void ReadLoop();
  void Send(SseChunkPtr chunk);
  void Flush();
  // Sends a close frame once what is queued is written.
  void CloseWith(boost::beast::websocket::close_code code, std::string reason);
  void CloseNow();

  boost::beast::websocket::stream<FlexStream> ws_;
  Gateway* const gateway_;
  Request request_;
  const Route route_;
  const Credential credential_;  // the upgrade request's, forwarded with every upstream call
  boost::beast::flat_buffer read_buffer_;
  bool accepted_ = false;
  bool closed_ = false;
  int64_t last_sent_ = 0;  // a job's stream: the newest sequence sent
  std::deque<SseChunkPtr> pending_;
  bool writing_ = false;
  bool one_job_ = false;
  std::optional<boost::beast::websocket::close_reason> closing_;
  std::function<void()> leave_;
};

}  // namespace jobstream::gateway
