#include "gateway/gateway.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "gateway/job_feed.h"
#include "gateway/events_feed.h"
#include "gateway/session.h"

namespace jobstream::gateway {

namespace net = boost::asio;

std::string Metrics::Render() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, int64_t value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name,
                    " ", value, "\n");
  };
  metric("jobstream_gateway_connections_open", "gauge", "Open HTTP connections.",
         connections_open.load());
  metric("jobstream_gateway_connections_total", "counter", "HTTP connections accepted.",
         connections_total.load());
  metric("jobstream_gateway_connections_refused_total", "counter",
         "Connections closed at once because --max_connections was reached.",
         connections_refused.load());
  metric("jobstream_gateway_requests_total", "counter", "HTTP requests read.",
         requests_total.load());
  metric("jobstream_gateway_responses_4xx_total", "counter", "Responses with a 4xx status.",
         responses_4xx.load());
  metric("jobstream_gateway_responses_5xx_total", "counter", "Responses with a 5xx status.",
         responses_5xx.load());
  metric("jobstream_gateway_sse_streams_open", "gauge", "Open Server-Sent Events streams.",
         sse_streams_open.load());
  metric("jobstream_gateway_sse_events_sent_total", "counter", "Events sent to SSE clients.",
         sse_events_sent.load());
  metric("jobstream_gateway_websockets_open", "gauge", "Open WebSocket streams.",
         websockets_open.load());
  metric("jobstream_gateway_websocket_messages_sent_total", "counter",
         "Events sent to WebSocket clients.", websocket_messages_sent.load());
  metric("jobstream_gateway_upstream_streams_open", "gauge",
         "WatchJob streams open to jobstream-server.", upstream_streams_open.load());
  metric("jobstream_gateway_upstream_reconnects_total", "counter",
         "WatchJob streams reopened after the server went away.", upstream_reconnects.load());
  return out;
}

absl::StatusOr<std::shared_ptr<net::ssl::context>> MakeTlsContext(
    const std::string& cert_file, const std::string& key_file,
    const std::string& client_ca_file) {
  auto tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
  tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                   net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                   net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
  boost::system::error_code ec;
  if (tls->use_certificate_chain_file(cert_file, ec); ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert ", cert_file, ": ", ec.message()));
  }
  if (tls->use_private_key_file(key_file, net::ssl::context::pem, ec); ec) {
    return absl::InvalidArgumentError(absl::StrCat("--tls_key ", key_file, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
    return absl::InvalidArgumentError("--tls_key is not the key of --tls_cert");
  }
  if (!client_ca_file.empty()) {
    if (tls->load_verify_file(client_ca_file, ec); ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_client_ca ", client_ca_file, ": ", ec.message()));
    }
    tls->set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert);
  }
  return tls;
}

Gateway::Gateway(net::io_context& ioc, const net::ip::tcp::endpoint& endpoint,
                 std::shared_ptr<grpc::Channel> upstream, GatewayOptions options)
    : ioc_(ioc),
      acceptor_(ioc),
      options_(std::move(options)),
      stub_(v1::JobService::NewStub(upstream)),
      schedule_stub_(v1::ScheduleService::NewStub(upstream)),
      health_stub_(grpc::health::v1::Health::NewStub(upstream)) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(net::socket_base::max_listen_connections);
  port_ = acceptor_.local_endpoint().port();
}

void Gateway::Start() { Accept(); }

void Gateway::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](boost::system::error_code ec,
                                                        net::ip::tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;  // stopped
    if (ec) {
      // Out of file descriptors, most likely: back off instead of spinning.
      auto timer = std::make_shared<net::steady_timer>(ioc_, std::chrono::milliseconds(50));
      timer->async_wait([this, timer](boost::system::error_code) { Accept(); });
      return;
    }
    if (static_cast<size_t>(metrics_.connections_open.load()) >= options_.max_connections) {
      ++metrics_.connections_refused;
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      auto session = std::make_shared<Session>(std::move(socket), this);
      Register(session);
      session->Start();
    }
    Accept();
  });
}

std::shared_ptr<JobFeed> Gateway::JoinFeed(const std::string& authorization,
                                           const std::string& job_id, int64_t after,
                                           const std::shared_ptr<FeedSink>& sink) {
  const std::string key = absl::StrCat(job_id, " ", authorization);
  std::shared_ptr<JobFeed> shared;
  {
    absl::MutexLock lock(&feeds_mu_);
    if (++joins_ % 1024 == 0) {  // forget feeds that have gone
      for (auto it = feeds_.begin(); it != feeds_.end();) {
        if (it->second.expired()) feeds_.erase(it++); else ++it;
      }
    }
    shared = feeds_[key].lock();
    const JobFeed::JoinResult joined =
        shared ? shared->Join(sink, after) : JobFeed::JoinResult::kEnded;
    if (joined == JobFeed::JoinResult::kJoined) return shared;
    if (joined == JobFeed::JoinResult::kEnded) {  // none, or it stopped: a new shared one
      shared = std::make_shared<JobFeed>(this, authorization, job_id, after);
      feeds_[key] = shared;
      shared->Join(sink, after);
      shared->Open();
      return shared;
    }
  }
  // The shared feed keeps nothing as old as `after`: a feed of its own.
  auto own = std::make_shared<JobFeed>(this, authorization, job_id, after);
  own->Join(sink, after);
  own->Open();
  return own;
}

void Gateway::JoinEventsFeed(const std::string& authorization,
                             const v1::WatchJobsRequest& request,
                             const std::shared_ptr<StreamSink>& session) {
  const std::string key = absl::StrCat(EventsFeed::Key(request), " ", authorization);
  std::shared_ptr<EventsFeed> fresh;
  {
    absl::MutexLock lock(&feeds_mu_);
    if (++joins_ % 1024 == 0) {  // forget feeds that have gone
      for (auto it = events_feeds_.begin(); it != events_feeds_.end();) {
        if (it->second.expired()) events_feeds_.erase(it++); else ++it;
      }
    }
    std::shared_ptr<EventsFeed> shared = events_feeds_[key].lock();
    if (shared && shared->Join(session)) return;
    fresh = std::make_shared<EventsFeed>(this, authorization, request);
    events_feeds_[key] = fresh;
    fresh->Join(session);
  }
  fresh->Open();
}

void Gateway::Register(const std::shared_ptr<Connection>& connection) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      connections_[connection.get()] = connection;
      return;
    }
  }
  // Accepted (or upgraded) just as Stop ran: Stop has not seen it, so it closes here, or
  // it would keep the gateway from exiting.
  connection->Close();
}

void Gateway::Unregister(Connection* connection) {
  absl::MutexLock lock(&mu_);
  connections_.erase(connection);
}

void Gateway::Stop() {
  std::vector<std::shared_ptr<Connection>> open;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [ptr, weak] : connections_) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
  }
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  for (auto& session : open) session->Close();
}

}  // namespace jobstream::gateway
