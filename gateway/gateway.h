// Gateway: HTTP/1.1 on one side (Boost.Beast, asynchronous, a strand per connection and
// no thread per connection), jobstream's gRPC API on the other. It links only the proto
// and the client code: it is a plain client of jobstream-server.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/status/statusor.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl/context.hpp"
#include "grpcpp/grpcpp.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/schedules.grpc.pb.h"

namespace jobstream::gateway {

struct GatewayOptions {
  size_t max_body_bytes = (1 << 20) + (64 << 10);  // 1 MiB of params plus the envelope
  size_t max_header_bytes = 16 << 10;
  size_t max_connections = 18000;  // below the 20,000 open-file limit, with room to spare
  // A whole request must arrive in this; also how long an idle keep-alive connection stays.
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration heartbeat = absl::Seconds(15);        // SSE comment on an idle stream
  absl::Duration call_timeout = absl::Seconds(10);     // deadline of unary calls upstream
  absl::Duration reconnect_timeout = absl::Seconds(30);  // SSE: upstream lost this long
  int sse_retry_ms = 2000;
  size_t sse_max_pending = 512;  // unsent SSE chunks before a slow client is dropped
  size_t max_streams = 16000;    // open SSE and WebSocket streams
  std::set<std::string> cors_origins;  // "*" allows any origin
  absl::Duration session_max_age = absl::Hours(24);  // the /v1/session cookie's lifetime
  // Serve HTTPS with this (null: plain HTTP); the session cookie is then Secure.
  std::shared_ptr<boost::asio::ssl::context> tls;
  bool https() const { return tls != nullptr; }
};

// The TLS context of --tls_cert, --tls_key and (to ask clients for certificates)
// --tls_client_ca; INVALID_ARGUMENT names the file that is wrong.
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeTlsContext(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file);

// Counters exported at /metrics (Prometheus text).
struct Metrics {
  std::atomic<int64_t> connections_open{0};
  std::atomic<int64_t> connections_total{0};
  std::atomic<int64_t> connections_refused{0};
  std::atomic<int64_t> requests_total{0};
  std::atomic<int64_t> responses_4xx{0};
  std::atomic<int64_t> responses_5xx{0};
  std::atomic<int64_t> sse_streams_open{0};
  std::atomic<int64_t> sse_events_sent{0};
  std::atomic<int64_t> upstream_streams_open{0};
  std::atomic<int64_t> upstream_reconnects{0};
  std::atomic<int64_t> websockets_open{0};
  std::atomic<int64_t> websocket_messages_sent{0};
  std::string Render() const;
};

class JobFeed;
class FeedSink;
class StreamSink;
class EventsFeed;

// An open client connection, HTTP or WebSocket: what Stop closes.
class Connection {
 public:
  virtual ~Connection() = default;
  // From any thread.
  virtual void Close() = 0;
};

class Gateway {
 public:
  Gateway(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& endpoint,
          std::shared_ptr<grpc::Channel> upstream, GatewayOptions options);
  unsigned short port() const { return port_; }
  void Start();
  // Stops accepting and closes every connection (SSE streams end; browsers reconnect).
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  const GatewayOptions& options() const { return options_; }
  boost::asio::io_context& io_context() { return ioc_; }
  // The job's shared feed, joined by `sink` after `after`; a feed of its own when the shared
  // one cannot serve that position. Feeds are shared only among callers presenting the
  // same credential (`authorization`), which their upstream call carries: a token never
  // reads through another's stream.
  std::shared_ptr<JobFeed> JoinFeed(const std::string& authorization, const std::string& job_id,
                                    int64_t after, const std::shared_ptr<FeedSink>& sink)
      ABSL_LOCKS_EXCLUDED(feeds_mu_);
  // Adds the session to the shared /v1/events stream of this filter and credential (a new
  // one if none).
  void JoinEventsFeed(const std::string& authorization, const v1::WatchJobsRequest& request,
                      const std::shared_ptr<StreamSink>& sink) ABSL_LOCKS_EXCLUDED(feeds_mu_);
  v1::JobService::Stub* stub() { return stub_.get(); }
  v1::ScheduleService::Stub* schedule_stub() { return schedule_stub_.get(); }
  boost::asio::ssl::context* tls_context() const { return options_.tls.get(); }
  grpc::health::v1::Health::Stub* health_stub() { return health_stub_.get(); }
  Metrics& metrics() { return metrics_; }
  void Register(const std::shared_ptr<Connection>& connection) ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(Connection* connection) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Accept();

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  const GatewayOptions options_;
  std::unique_ptr<v1::JobService::Stub> stub_;
  std::unique_ptr<v1::ScheduleService::Stub> schedule_stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
  Metrics metrics_;
  absl::Mutex mu_;
  absl::flat_hash_map<Connection*, std::weak_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex feeds_mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<JobFeed>> feeds_ ABSL_GUARDED_BY(feeds_mu_);
  absl::flat_hash_map<std::string, std::weak_ptr<EventsFeed>> events_feeds_
      ABSL_GUARDED_BY(feeds_mu_);
  size_t joins_ ABSL_GUARDED_BY(feeds_mu_) = 0;
};

}  // namespace jobstream::gateway
