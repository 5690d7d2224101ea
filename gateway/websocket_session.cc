#include "gateway/websocket_session.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;

WebSocketSession::WebSocketSession(FlexStream stream, Gateway* gateway, Request request,
                                   Route route, Credential credential)
    : ws_(std::move(stream)), gateway_(gateway), request_(std::move(request)),
      route_(std::move(route)), credential_(std::move(credential)) {
  ++gateway_->metrics().websockets_open;
}

WebSocketSession::~WebSocketSession() { --gateway_->metrics().websockets_open; }

template <typename Fn>
void WebSocketSession::Post(Fn fn) {
  net::post(ws_.get_executor(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
    if (!self->closed_) fn();
  });
}

void WebSocketSession::Close() {
  Post([this] { CloseWith(websocket::close_code::going_away, "the gateway is stopping"); });
}

void WebSocketSession::Start() {
  net::dispatch(ws_.get_executor(), [self = shared_from_this()] {
    if (self->route_.kind == RouteKind::kJobWs) {
      auto after = ResumeAfter(std::nullopt, self->route_.Param("after"));
      if (!after.ok()) {
        return self->Refuse(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                         std::string(after.status().message())));
      }
      return self->StartJob(after->value_or(0));
    }
    auto request = QueryWatchFilter(self->route_);
    if (!request.ok()) {
      return self->Refuse(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                       std::string(request.status().message())));
    }
    self->gateway_->JoinEventsFeed(self->credential_.authorization, *request, self);
  });
}

void WebSocketSession::StartJob(int64_t after) {
  struct Call {
    grpc::ClientContext ctx;
    v1::GetStatusRequest request;
    v1::Job job;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(gateway_->options().call_timeout));
  call->request.set_job_id(route_.job_id);
  AddCredential(call->ctx, credential_.authorization);
  gateway_->stub()->async()->GetStatus(
      &call->ctx, &call->request, &call->job, [self = shared_from_this(), call, after](grpc::Status s) {
        self->Post([self, call, after, s] {
          if (!s.ok()) return self->Refuse(s);
          const v1::Job& job = call->job;
          if (after > job.last_sequence()) {
            return self->Refuse(grpc::Status(
                grpc::StatusCode::OUT_OF_RANGE,
                absl::StrCat("after ", after, " is beyond job ", job.id(), "'s last sequence ",
                             job.last_sequence())));
          }
          self->last_sent_ = after;
          self->one_job_ = true;
          if (v1::IsFinished(job.state()) && after >= job.last_sequence()) {
            // Read to its end already: nothing more will come.
            return self->Accept([self] {
              self->CloseWith(websocket::close_code::normal, "the job has finished");
            });
          }
          self->Accept([self, id = job.id(), after] {
            std::shared_ptr<JobFeed> feed = self->gateway_->JoinFeed(self->credential_.authorization, id,
                                                                     after, self);
            self->leave_ = [feed, s = self.get()] { feed->Leave(s); };
          });
        });
      });
}

void WebSocketSession::Refuse(const grpc::Status& status) {
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(HttpStatusFor(status.error_code())), request_.version());
  res->set(http::field::server, "jobstream-gateway");
  res->set(http::field::content_type, "application/json");
  res->body() = ErrorJson(status.error_code(), status.error_message());
  res->keep_alive(false);
  res->prepare_payload();
  if (res->result_int() >= 500) ++gateway_->metrics().responses_5xx; else ++gateway_->metrics().responses_4xx;
  http::async_write(ws_.next_layer(), *res,
                    [self = shared_from_this(), res](beast::error_code, size_t) { self->CloseNow(); });
}

void WebSocketSession::Accept(std::function<void()> then) {
  beast::get_lowest_layer(ws_).expires_never();  // the stream's own timeouts from here
  websocket::stream_base::timeout timeout;
  timeout.handshake_timeout = std::chrono::seconds(10);
  // A ping when the peer has been quiet half of this; no pong by the end closes it.
  timeout.idle_timeout = absl::ToChronoMilliseconds(gateway_->options().heartbeat * 2);
  timeout.keep_alive_pings = true;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(http::field::server, "jobstream-gateway");
  }));
  ws_.text(true);
  ws_.async_accept(request_, [self = shared_from_this(), then = std::move(then)](beast::error_code ec) {
    if (ec) return self->CloseNow();
    self->accepted_ = true;
    self->ReadLoop();
    then();
    self->Flush();
  });
}

void WebSocketSession::ReadLoop() {
  // Always reading: control frames (ping, pong, close) are handled only during a read.
  ws_.async_read(read_buffer_, [self = shared_from_this()](beast::error_code ec, size_t) {
    if (ec) return self->CloseNow();  // closed by the peer, timed out, or our close done
    const bool binary = self->ws_.got_binary();
    self->read_buffer_.clear();
    self->CloseWith(binary ? websocket::close_code::unknown_data : websocket::close_code::policy_error,
                    "this stream takes no messages");
  });
}

void WebSocketSession::StreamStarted(std::function<void()> leave) {
  Post([this, leave = std::move(leave)]() mutable {
    leave_ = std::move(leave);
    Accept([] {});
  });
}

void WebSocketSession::StreamRefused(const grpc::Status& status) {
  Post([this, status] { Refuse(status); });
}

void WebSocketSession::Deliver(SseChunkPtr chunk) {
  Post([this, chunk = std::move(chunk)] { Send(chunk); });
}

void WebSocketSession::FeedEnded() {
  Post([this] {
    CloseWith(websocket::close_code::try_again_later,
              "the stream was interrupted; reconnect (with ?after= the last sequence)");
  });
}

void WebSocketSession::FeedFinished() {
  Post([this] { CloseWith(websocket::close_code::normal, "the job has finished"); });
}

void WebSocketSession::Send(SseChunkPtr chunk) {
  if (closing_ || chunk->json.empty()) return;
  if (one_job_) {
    if (chunk->sequence <= last_sent_) return;
    last_sent_ = chunk->sequence;
  }
  // A client that falls behind gets the newest progress instead of every one...
  if (chunk->progress && pending_.size() >= kConflateAfter && pending_.back()->progress) {
    pending_.back() = std::move(chunk);
  } else if (pending_.size() >= gateway_->options().sse_max_pending) {
    return CloseNow();  // ...and one still too slow is dropped; it resumes with ?after=
  } else {
    pending_.push_back(std::move(chunk));
  }
  ++gateway_->metrics().websocket_messages_sent;
  Flush();
}

void WebSocketSession::Flush() {
  if (!accepted_ || closed_ || writing_) return;
  if (pending_.empty()) {
    if (!closing_) return;
    writing_ = true;
    ws_.async_close(*closing_, [self = shared_from_this()](beast::error_code) {
      self->CloseNow();
    });
    return;
  }
  writing_ = true;
  SseChunkPtr chunk = std::move(pending_.front());
  pending_.pop_front();
  ws_.async_write(net::buffer(chunk->json), [self = shared_from_this(), chunk](beast::error_code ec, size_t) {
    if (ec) return self->CloseNow();
    self->writing_ = false;
    self->Flush();
  });
}

void WebSocketSession::CloseWith(websocket::close_code code, std::string reason) {
  if (closing_ || closed_) return;
  closing_ = websocket::close_reason(code, reason);
  if (!accepted_) return CloseNow();
  Flush();
}

void WebSocketSession::CloseNow() {
  if (closed_) return;
  closed_ = true;
  if (leave_) std::exchange(leave_, nullptr)();
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).close();
  gateway_->Unregister(this);
}

}  // namespace jobstream::gateway
