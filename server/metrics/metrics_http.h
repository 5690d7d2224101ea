// MetricsHttp: the server's /metrics endpoint, Prometheus' text format over plain HTTP/1.1
// on a port of its own (--metrics_listen), served by one thread of its own so a scrape never
// waits behind gRPC work and gRPC never waits behind a scrape.
//
// GET (or HEAD) /metrics answers the rendered registry; any other path is 404, any other
// method 405, a query parameter 400. With tokens, a scrape presents "Authorization: Bearer
// <token>" of a token with the role metrics or read (or admin): 401 without a known token,
// 403 without the role. A connection has `read_timeout` to send each request, and at most
// `max_connections` are open at once (more are closed at once): a slow or idle client costs
// one descriptor for a while, never a thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/tokens.h"

namespace jobstream::server_metrics {

class MetricsHttp {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 9464;  // 0 picks one
    const auth::Authenticator* authenticator = nullptr;  // null or disabled: open
    absl::Duration read_timeout = absl::Seconds(10);
    size_t max_connections = 64;
  };
  // Binds and starts serving what `render` returns; an error if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttp>> Start(const Options& options,
                                                            std::function<std::string()> render);
  ~MetricsHttp();  // Stop()
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  int port() const;
  // Closes the port and every connection; returns once the thread has ended.
  void Stop();

 private:
  struct Impl;
  explicit MetricsHttp(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jobstream::server_metrics
