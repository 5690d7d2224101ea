// jobstream-gateway: REST + Server-Sent Events in front of jobstream-server.
#include <sys/resource.h>

#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "client/job_client.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/signal_set.hpp"
#include "common/log.h"
#include "gateway/gateway.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080", "HOST:PORT to serve HTTP on; port 0 picks one");
ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "jobstream-server address; or several, comma-separated IP:PORTs, of servers sharing "
          "one PostgreSQL store: calls are spread over them, and a stream whose server dies "
          "resumes on another");
ABSL_FLAG(std::string, server_ca, "", "PEM CA to trust: talk to the server over TLS");
ABSL_FLAG(std::string, client_cert, "", "PEM client certificate for a server that asks (mTLS)");
ABSL_FLAG(std::string, client_key, "", "PEM private key of --client_cert");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve HTTPS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA of client certificates: HTTPS clients must present one it signed");
ABSL_FLAG(int, threads, 2, "I/O threads");
ABSL_FLAG(bool, log, true, "log a line per HTTP request (stderr)");
ABSL_FLAG(std::string, log_format, "text", "text (key=value) or json (an object per line)");
ABSL_FLAG(int64_t, max_connections, 18000, "open HTTP connections (SSE included)");
ABSL_FLAG(int64_t, max_streams, 16000, "open SSE and WebSocket streams (each a connection)");
ABSL_FLAG(int64_t, max_body_bytes, (1 << 20) + (64 << 10), "largest request body");
ABSL_FLAG(int64_t, max_header_bytes, 16 << 10, "largest request header block");
ABSL_FLAG(absl::Duration, request_timeout, absl::Seconds(10),
          "time a client has to send a whole request");
ABSL_FLAG(absl::Duration, heartbeat, absl::Seconds(15), "SSE keepalive comment interval");
ABSL_FLAG(std::vector<std::string>, cors_origins, {},
          "origins allowed to call the API from a browser (comma-separated; * for any)");
ABSL_FLAG(absl::Duration, session_max_age, absl::Hours(24),
          "how long the cookie POST /v1/session sets is kept");

namespace {
int Fail(const std::string& message) {
  std::cerr << "jobstream-gateway: " << message << "\n";
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("jobstream-gateway --listen=127.0.0.1:8080 --server=127.0.0.1:50051");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Fail(absl::StrCat("unexpected argument: ", rest[1]));
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  const std::string listen = absl::GetFlag(FLAGS_listen);
  const size_t colon = listen.rfind(':');
  int port = -1;
  boost::system::error_code ec;
  boost::asio::ip::address address;
  if (colon != std::string::npos) address = boost::asio::ip::make_address(listen.substr(0, colon), ec);
  if (colon == std::string::npos || ec || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return Fail("--listen must be IP:PORT with a port from 0 to 65535, not \"" + listen + "\"");
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 1 || threads > 64) return Fail("--threads must be 1..64");
  jobstream::gateway::GatewayOptions options;
  if (absl::GetFlag(FLAGS_max_connections) < 1 || absl::GetFlag(FLAGS_max_body_bytes) < 1 ||
      absl::GetFlag(FLAGS_max_header_bytes) < 1024 ||
      absl::GetFlag(FLAGS_request_timeout) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_heartbeat) <= absl::ZeroDuration()) {
    return Fail("limits must be positive (--max_header_bytes at least 1024)");
  }
  options.max_connections = absl::GetFlag(FLAGS_max_connections);
  if (absl::GetFlag(FLAGS_max_streams) < 1) return Fail("--max_streams must be at least 1");
  options.max_streams = static_cast<size_t>(absl::GetFlag(FLAGS_max_streams));
  options.max_body_bytes = absl::GetFlag(FLAGS_max_body_bytes);
  options.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  options.request_timeout = absl::GetFlag(FLAGS_request_timeout);
  options.heartbeat = absl::GetFlag(FLAGS_heartbeat);
  auto log_format = jobstream::logs::ParseFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) return Fail(std::string(log_format.status().message()));
  options.session_max_age = absl::GetFlag(FLAGS_session_max_age);
  const std::string tls_cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string tls_key = absl::GetFlag(FLAGS_tls_key);
  const std::string tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (auto s = jobstream::client::CheckServingTlsFlags(tls_cert, tls_key, tls_client_ca);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (!tls_cert.empty()) {
    auto tls = jobstream::gateway::MakeTlsContext(tls_cert, tls_key, tls_client_ca);
    if (!tls.ok()) return Fail(std::string(tls.status().message()));
    options.tls = *std::move(tls);
  }
  if (options.session_max_age <= absl::ZeroDuration() ||
      options.session_max_age > absl::Hours(24 * 400)) {
    return Fail("--session_max_age must be more than 0 and at most 400 days (9600h)");
  }
  for (const std::string& origin : absl::GetFlag(FLAGS_cors_origins)) {
    options.cors_origins.insert(origin);
  }

  // Every SSE client is a socket: use all the file descriptors we may.
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }

  // The same quick reconnects as every jobstream client (see JobClient::Connect).
  jobstream::client::ChannelOptions upstream;
  upstream.ca_file = absl::GetFlag(FLAGS_server_ca);
  upstream.cert_file = absl::GetFlag(FLAGS_client_cert);
  upstream.key_file = absl::GetFlag(FLAGS_client_key);
  auto connected = jobstream::client::JobClient::Connect(absl::GetFlag(FLAGS_server), upstream);
  if (!connected.ok()) return Fail(std::string(connected.status().message()));
  std::shared_ptr<grpc::Channel> channel = *std::move(connected);

  boost::asio::io_context ioc(threads);
  std::unique_ptr<jobstream::gateway::Gateway> gateway;
  try {
    gateway = std::make_unique<jobstream::gateway::Gateway>(
        ioc, boost::asio::ip::tcp::endpoint(address, static_cast<unsigned short>(port)), channel,
        options);
  } catch (const boost::system::system_error& e) {
    return Fail("cannot listen on " + listen + ": " + e.code().message());
  }
  if (absl::GetFlag(FLAGS_log)) jobstream::logs::Start(*log_format);
  gateway->Start();
  std::cout << "listening on " << listen.substr(0, colon) << ":" << gateway->port() << std::endl;

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int signal) {
    std::cerr << "jobstream-gateway: signal " << signal << ", shutting down\n";
    gateway->Stop();
    // Every connection is closed now; if something still holds the loop, say so and go
    // rather than ignore the signal.
    std::thread([] {
      absl::SleepFor(absl::Seconds(15));
      std::cerr << "jobstream-gateway: still not stopped after 15s; exiting anyway\n";
      std::_Exit(1);
    }).detach();
  });
  // Runs until Stop() has closed the acceptor and every connection.
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  // Cancelled upstream calls finish on gRPC's threads and post to the sessions; let them,
  // then run what they posted, so no session outlives the gateway it reports to.
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  while (gateway->metrics().upstream_streams_open.load() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ioc.restart();
  ioc.run();
  gateway.reset();
  jobstream::logs::Stop();
  return 0;
}
