// FlexStream: a connection's byte stream, plain TCP or TLS (Beast's ssl_stream over
// OpenSSL), chosen per gateway at start. Sessions, the HTTP parser and the WebSocket
// stream read and write through it without caring which; tcp() is the TCP stream under
// either, for deadlines and closing.
#pragma once

#include <memory>
#include <optional>
#include <utility>

#include "boost/asio/ssl.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/ssl.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/beast/websocket/ssl.hpp"

namespace jobstream::gateway {

class FlexStream {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  // What get_lowest_layer() finds: the TCP stream, under TLS or not.
  using next_layer_type = boost::beast::tcp_stream;

  // TLS when `tls` is given (it must outlive the stream).
  FlexStream(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls) {
    if (tls != nullptr) {
      tls_.emplace(std::move(socket), *tls);
    } else {
      plain_.emplace(std::move(socket));
    }
  }
  FlexStream(FlexStream&&) = default;

  bool is_tls() const { return tls_.has_value(); }
  boost::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
  next_layer_type& next_layer() { return tcp(); }
  executor_type get_executor() { return tcp().get_executor(); }

  // The TLS handshake (at once for plain TCP).
  template <typename Handler>
  void async_handshake(Handler&& handler) {
    if (!tls_) {
      return boost::asio::post(get_executor(), [h = std::forward<Handler>(handler)]() mutable {
        h(boost::beast::error_code());
      });
    }
    tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Handler>(handler));
  }

  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) return tls_->async_read_some(buffers, std::forward<Handler>(handler));
    plain_->async_read_some(buffers, std::forward<Handler>(handler));
  }
  template <typename Buffers, typename Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) return tls_->async_write_some(buffers, std::forward<Handler>(handler));
    plain_->async_write_some(buffers, std::forward<Handler>(handler));
  }

  // For the WebSocket stream's closing handshake (found by argument-dependent lookup).
  friend void teardown(boost::beast::role_type role, FlexStream& stream,
                       boost::beast::error_code& ec) {
    using boost::beast::websocket::teardown;
    if (stream.tls_) return teardown(role, *stream.tls_, ec);
    teardown(role, stream.plain_->socket(), ec);
  }
  template <typename Handler>
  friend void async_teardown(boost::beast::role_type role, FlexStream& stream,
                             Handler&& handler) {
    using boost::beast::websocket::async_teardown;
    if (stream.tls_) return async_teardown(role, *stream.tls_, std::forward<Handler>(handler));
    async_teardown(role, stream.plain_->socket(), std::forward<Handler>(handler));
  }

 private:
  std::optional<boost::beast::tcp_stream> plain_;
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> tls_;
};

}  // namespace jobstream::gateway
