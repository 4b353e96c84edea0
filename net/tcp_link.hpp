#pragma once
// A TCP connection of our own that is plaintext, or TLS when the process has credentials: one
// type for the code that reads and writes the trace stream either way. Each operation goes to
// the TLS stream or straight to the socket (`with`).

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>

#include <memory>
#include <utility>

namespace eoe::net {

class tcp_link {
public:
  using tcp = boost::asio::ip::tcp;
  using tls_stream = boost::asio::ssl::stream<tcp::socket>;

  /// An unconnected link; `tls` null: plaintext. The context must outlive the link.
  tcp_link(boost::asio::io_context& io, boost::asio::ssl::context* tls) : socket_(io) {
    if (tls)
      tls_ = std::make_unique<tls_stream>(io, *tls);
  }

  /// An accepted connection; over TLS once `async_handshake` as the server completed.
  tcp_link(tcp::socket s, boost::asio::ssl::context* tls) : socket_(std::move(s)) {
    if (tls)
      tls_ = std::make_unique<tls_stream>(std::move(socket_), *tls);
  }

  bool is_tls() const {
    return tls_ != nullptr;
  }

  /// The TCP socket (to connect, close, set options).
  tcp::socket& socket() {
    return tls_ ? tls_->next_layer() : socket_;
  }

  bool is_open() const {
    return tls_ ? tls_->next_layer().is_open() : socket_.is_open();
  }

  /// Calls f with the stream to read and write: the TLS stream, or the socket.
  template <class F>
  void with(F&& f) {
    if (tls_)
      f(*tls_);
    else
      f(socket_);
  }

  /// The TLS handshake, or (plaintext) `done` with no error at once (posted).
  template <class Handler>
  void async_handshake(boost::asio::ssl::stream_base::handshake_type type, Handler&& done) {
    if (tls_)
      tls_->async_handshake(type, std::forward<Handler>(done));
    else
      boost::asio::post(socket_.get_executor(),
                        [done = std::forward<Handler>(done)]() mutable {
                          done(boost::system::error_code{});
                        });
  }

  /// Closes the socket; pending operations end with an error.
  void close() {
    boost::system::error_code ignored;
    socket().close(ignored);
  }

private:
  tcp::socket socket_;
  std::unique_ptr<tls_stream> tls_;
};

} // namespace eoe::net
