#include "server/metrics/metrics_http.h"

#include <atomic>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace jobstream::server_metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct Reply {
  http::status status;
  std::string body;
  std::string content_type = "text/plain; charset=utf-8";
  bool challenge = false;  // 401: WWW-Authenticate
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const MetricsHttp::Options& options,
             const std::function<std::string()>& render, std::atomic<size_t>& open)
      : stream_(std::move(socket)), options_(options), render_(render), open_(open) {
    ++open_;
  }
  ~Connection() { --open_; }

  void Read() {
    parser_.emplace();
    parser_->header_limit(8 << 10);
    parser_->body_limit(0);  // a GET has no body
    stream_.expires_after(std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.read_timeout)));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      Close();
      return;
    }
    if (ec) {  // not HTTP, too large, or with a body: say so and close
      Send({http::status::bad_request, absl::StrCat("bad request: ", ec.message(), "\n")}, false,
           11, false);
      return;
    }
    const auto& request = parser_->get();
    Send(Answer(request), request.keep_alive(), request.version(),
         request.method() == http::verb::head);
  }

  Reply Answer(const http::request<http::empty_body>& request) const {
    const beast::string_view target = request.target();
    const size_t question = target.find('?');
    const beast::string_view path = target.substr(0, question);
    if (path != "/metrics") {
      return {http::status::not_found, "not found: this port serves GET /metrics\n"};
    }
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      return {http::status::method_not_allowed, "GET /metrics only\n"};
    }
    if (question != beast::string_view::npos) {
      return {http::status::bad_request, "GET /metrics takes no query parameters\n"};
    }
    if (options_.authenticator != nullptr && options_.authenticator->enabled()) {
      auto header = request.find(http::field::authorization);
      const absl::string_view authorization =
          header == request.end() ? absl::string_view()
                                  : absl::string_view(header->value().data(), header->value().size());
      auto who = options_.authenticator->Authenticate(authorization);
      if (!who.ok()) {
        Reply r{http::status::unauthorized, absl::StrCat(who.status().message(), "\n")};
        r.challenge = true;
        return r;
      }
      if (!who->Has(auth::Role::kMetrics) && !who->Has(auth::Role::kRead)) {
        return {http::status::forbidden,
                absl::StrCat("token \"", who->name, "\" may not read metrics: it needs the role "
                             "metrics or read\n")};
      }
    }
    return {http::status::ok, render_(), "text/plain; version=0.0.4; charset=utf-8"};
  }

  void Send(Reply reply, bool keep_alive, unsigned version, bool head) {
    auto response = std::make_shared<http::response<http::string_body>>(reply.status, version);
    response->set(http::field::server, "jobstream-server");
    response->set(http::field::content_type, reply.content_type);
    if (reply.status == http::status::method_not_allowed) response->set(http::field::allow, "GET, HEAD");
    if (reply.challenge) response->set(http::field::www_authenticate, "Bearer realm=\"jobstream\"");
    response->keep_alive(keep_alive);
    response->body() = std::move(reply.body);
    response->prepare_payload();  // Content-Length of the body, also for HEAD
    if (head) response->body().clear();  // the header stays as a GET's
    stream_.expires_after(std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.read_timeout)));
    auto self = shared_from_this();
    auto done = [self, response, keep_alive](beast::error_code ec, size_t) {
      if (ec || !keep_alive) {
        self->Close();
        return;
      }
      self->Read();
    };
    http::async_write(stream_, *response, std::move(done));
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  const MetricsHttp::Options& options_;
  const std::function<std::string()>& render_;
  std::atomic<size_t>& open_;
};

}  // namespace

struct MetricsHttp::Impl {
  // Connections refer to options, render and open: declared before io, so they outlive
  // the connections io's destructor destroys.
  Options options;
  std::function<std::string()> render;
  std::atomic<size_t> open{0};
  int port = 0;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::atomic<bool> stopped{false};

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        if (open.load() >= options.max_connections) {
          beast::error_code ignored;
          socket.close(ignored);  // at the limit: the scraper tries again at its next interval
        } else {
          std::make_shared<Connection>(std::move(socket), options, render, open)->Read();
        }
      }
      Accept();
    });
  }
};

MetricsHttp::MetricsHttp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<MetricsHttp>> MetricsHttp::Start(
    const Options& options, std::function<std::string()> render) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->render = std::move(render);
  beast::error_code ec;
  std::string host = options.host;
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_listen: \"", options.host, "\" is not an IP address (or localhost)"));
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", options.host, ":",
                                               options.port, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<MetricsHttp>(new MetricsHttp(std::move(impl)));
}

MetricsHttp::~MetricsHttp() { Stop(); }

int MetricsHttp::port() const { return impl_->port; }

void MetricsHttp::Stop() {
  if (impl_->stopped.exchange(true)) return;
  impl_->io.stop();  // open connections close as the io_context's handlers are destroyed
  if (impl_->thread.joinable()) impl_->thread.join();
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace jobstream::server_metrics
