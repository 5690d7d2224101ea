// FlexStream: a connection's byte stream, plain TCP or TLS (Beast's ssl_stream over
// OpenSSL): the gateway's connections (TLS or not per gateway) and the server's webhook
// requests (per URL). The HTTP parser and the WebSocket stream read and write through it
// without caring which; tcp() is the TCP stream under either, for connecting, deadlines
// and closing.
//
// Its operations take type-erased completion handlers (ErasedHandler) and are compiled
// once, in flex_stream.cc. Templates here would instantiate the TLS and the TCP stream's
// operations again for every caller's handler: that made session.cc and
// websocket_session.cc two minutes of compiling each, and the gateway most of a build;
// webhook_sender.cc, which wrote and read over either stream, took 55 s (100 s in the
// sanitizer build).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/associated_executor.hpp"
#include "boost/asio/async_result.hpp"
#include "boost/asio/buffer.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/core/role.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/ssl/ssl_stream.hpp"

namespace jobstream {

// A move-only completion handler of any type, called with Args, that keeps the executor
// the handler is associated with (a session's strand): operations complete there, as
// they would with the handler itself. (Boost 1.81's any_completion_handler cannot be
// posted: its executor lacks blocking.never.)
template <typename... Args>
class ErasedHandler {
 public:
  using executor_type = boost::asio::any_io_executor;

  template <typename Handler>
  ErasedHandler(Handler&& handler, const executor_type& fallback)
      : executor_(boost::asio::get_associated_executor(handler, fallback)),
        impl_(std::make_unique<Impl<std::decay_t<Handler>>>(std::forward<Handler>(handler))) {}
  ErasedHandler(ErasedHandler&&) = default;

  executor_type get_executor() const noexcept { return executor_; }
  void operator()(Args... args) {
    std::unique_ptr<Base> impl = std::move(impl_);  // called once
    impl->Call(std::move(args)...);
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void Call(Args... args) = 0;
  };
  template <typename Handler>
  struct Impl final : Base {
    explicit Impl(Handler&& h) : handler(std::move(h)) {}
    void Call(Args... args) override { std::move(handler)(std::move(args)...); }
    Handler handler;
  };
  executor_type executor_;
  std::unique_ptr<Base> impl_;
};

class FlexStream {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  // What get_lowest_layer() finds: the TCP stream, under TLS or not.
  using next_layer_type = boost::beast::tcp_stream;
  using IoHandler = ErasedHandler<boost::beast::error_code, std::size_t>;
  using DoneHandler = ErasedHandler<boost::beast::error_code>;

  // TLS when `tls` is given (it must outlive the stream), as the server of the connection
  // or, for a request of our own, its client.
  FlexStream(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls,
             boost::asio::ssl::stream_base::handshake_type side =
                 boost::asio::ssl::stream_base::server);
  FlexStream(FlexStream&&);
  ~FlexStream();

  // The TLS stream, to set a client's server name and checks before the handshake; null
  // for plain TCP.
  boost::beast::ssl_stream<boost::beast::tcp_stream>* tls() { return tls_ ? &*tls_ : nullptr; }
  boost::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
  next_layer_type& next_layer() { return tcp(); }
  executor_type get_executor() { return tcp().get_executor(); }

  // The TLS handshake (at once for plain TCP).
  template <typename Token>
  auto async_handshake(Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::beast::error_code)>(
        [this](auto handler) { Handshake(DoneHandler(std::move(handler), get_executor())); }, token);
  }

  // Reads into the first non-empty buffer, writes up to kGather of them: a partial read or
  // write is what read_some and write_some promise (TLS only ever takes the first).
  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::beast::error_code, std::size_t)>(
        [this](auto handler, boost::asio::mutable_buffer buffer) {
          ReadSome(buffer, IoHandler(std::move(handler), get_executor()));
        },
        token, FirstOf(buffers));
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::beast::error_code, std::size_t)>(
        [this](auto handler, const Gathered& gathered) {
          WriteSome(gathered, IoHandler(std::move(handler), get_executor()));
        },
        token, Gather(buffers));
  }

  // For the WebSocket stream's closing handshake (found by argument-dependent lookup).
  friend void teardown(boost::beast::role_type role, FlexStream& stream,
                       boost::beast::error_code& ec) {
    stream.Teardown(role, ec);
  }
  template <typename Token>
  friend void async_teardown(boost::beast::role_type role, FlexStream& stream, Token&& token) {
    boost::asio::async_initiate<Token, void(boost::beast::error_code)>(
        [&stream, role](auto handler) {
          stream.AsyncTeardown(role, DoneHandler(std::move(handler), stream.get_executor()));
        },
        token);
  }

 private:
  static constexpr size_t kGather = 16;
  // Up to kGather non-empty buffers of a sequence: a buffer sequence itself.
  struct Gathered {
    std::array<boost::asio::const_buffer, kGather> items;
    size_t size = 0;
    const boost::asio::const_buffer* begin() const { return items.data(); }
    const boost::asio::const_buffer* end() const { return items.data() + size; }
  };
  template <typename Buffers>
  static boost::asio::mutable_buffer FirstOf(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() > 0) return b;
    }
    return {};
  }
  template <typename Buffers>
  static Gathered Gather(const Buffers& buffers) {
    Gathered g;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && g.size < kGather; ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() > 0) g.items[g.size++] = b;
    }
    return g;
  }

  void Handshake(DoneHandler handler);
  void ReadSome(boost::asio::mutable_buffer buffer, IoHandler handler);
  void WriteSome(const Gathered& buffers, IoHandler handler);
  void Teardown(boost::beast::role_type role, boost::beast::error_code& ec);
  void AsyncTeardown(boost::beast::role_type role, DoneHandler handler);

  boost::asio::ssl::stream_base::handshake_type side_;
  std::optional<boost::beast::tcp_stream> plain_;
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> tls_;
};

}  // namespace jobstream
