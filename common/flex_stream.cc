#include "common/flex_stream.h"

#include "boost/asio/post.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/ssl.hpp"
#include "boost/beast/websocket/ssl.hpp"
#include "boost/beast/websocket/teardown.hpp"

namespace jobstream {

namespace beast = boost::beast;
namespace net = boost::asio;

FlexStream::FlexStream(net::ip::tcp::socket socket, net::ssl::context* tls,
                       net::ssl::stream_base::handshake_type side)
    : side_(side) {
  if (tls != nullptr) {
    tls_.emplace(std::move(socket), *tls);
  } else {
    plain_.emplace(std::move(socket));
  }
}
FlexStream::FlexStream(FlexStream&&) = default;
FlexStream::~FlexStream() = default;

void FlexStream::Handshake(DoneHandler handler) {
  if (!tls_) {
    return net::post(get_executor(),
                     [h = std::move(handler)]() mutable { std::move(h)(beast::error_code()); });
  }
  tls_->async_handshake(side_, std::move(handler));
}

void FlexStream::ReadSome(net::mutable_buffer buffer, IoHandler handler) {
  if (tls_) return tls_->async_read_some(buffer, std::move(handler));
  plain_->async_read_some(buffer, std::move(handler));
}

void FlexStream::WriteSome(const Gathered& buffers, IoHandler handler) {
  if (tls_) return tls_->async_write_some(buffers, std::move(handler));
  plain_->async_write_some(buffers, std::move(handler));
}

void FlexStream::Teardown(beast::role_type role, beast::error_code& ec) {
  using beast::websocket::teardown;
  if (tls_) return teardown(role, *tls_, ec);
  teardown(role, plain_->socket(), ec);
}

void FlexStream::AsyncTeardown(beast::role_type role, DoneHandler handler) {
  using beast::websocket::async_teardown;
  if (tls_) return async_teardown(role, *tls_, std::move(handler));
  async_teardown(role, plain_->socket(), std::move(handler));
}

}  // namespace jobstream
