#include "net/tcp_data_plane.hpp"

#include "actors/contribution_codec.hpp"
#include "net/tls_context.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace eoe::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using tls_stream = ssl::stream<tcp::socket>;

namespace {

/// Headers larger than this are refused (a real one is under 200 bytes plus the node names).
constexpr std::uint32_t max_header = std::uint32_t{1} << 20;

/// What the receiving end of a TLS link sends once the handshake is done, its only byte.
constexpr char accepted = 'A';

/// Why a TLS handshake failed, with what OpenSSL found wrong with the peer's certificate.
std::string handshake_failure(tls_stream& s, const boost::system::error_code& ec) {
  std::string why = ec.message();
  if (const auto v = SSL_get_verify_result(s.native_handle()); v != X509_V_OK)
    why += std::string{" (its certificate: "} + X509_verify_cert_error_string(v) + ")";
  return why;
}

/// One incoming connection: reads frames (the prefix, then node name and header, then the
/// payloads straight into the contribution's strings) and delivers each. Stream: a TCP socket,
/// or a TLS stream over one (which first completes the server side of its handshake).
template <class Stream>
class inbound : public std::enable_shared_from_this<inbound<Stream>> {
public:
  inbound(Stream s, std::function<void(std::string, actors::contribution&&)> on_frame,
          std::function<void(const std::string&)> on_error)
    : socket_(std::move(s)), on_frame_(std::move(on_frame)), on_error_(std::move(on_error)) {}

  void start() {
    boost::system::error_code ec;
    socket_.lowest_layer().set_option(tcp::no_delay(true), ec);
    if constexpr (std::is_same_v<Stream, tls_stream>) {
      auto self = this->shared_from_this();
      socket_.async_handshake(ssl::stream_base::server, [self](boost::system::error_code ec) {
        if (ec) {
          boost::system::error_code ignored;
          const auto from = self->socket_.lowest_layer().remote_endpoint(ignored);
          self->on_error_("the TLS handshake with a peer at " + from.address().to_string() + ":"
                          + std::to_string(from.port()) + " failed: "
                          + handshake_failure(self->socket_, ec) + "; connection closed");
          return;
        }
        // TLS 1.3 tells a client nothing when its certificate is accepted: this byte does, so
        // that the sender keeps its frames until they can arrive.
        asio::async_write(self->socket_, asio::buffer(&accepted, 1),
                          [self](boost::system::error_code, size_t) {});
        self->read_prefix();
      });
    } else {
      read_prefix();
    }
  }

private:
  void read_prefix() {
    auto self = this->shared_from_this();
    asio::async_read(socket_, asio::buffer(prefix_), [self](boost::system::error_code ec, size_t) {
      if (ec)
        return; // the peer closed
      std::uint32_t header_len;
      std::uint16_t name_len;
      std::memcpy(&header_len, self->prefix_.data(), 4);
      std::memcpy(&name_len, self->prefix_.data() + 4, 2);
      if (header_len == 0 || header_len > max_header) {
        self->on_error_("a frame header of " + std::to_string(header_len) + " bytes (allowed: 1 to "
                        + std::to_string(max_header) + "); connection closed");
        return;
      }
      self->name_len_ = name_len;
      self->head_.resize(name_len + std::size_t{header_len});
      self->read_head();
    });
  }

  void read_head() {
    auto self = this->shared_from_this();
    asio::async_read(socket_, asio::buffer(head_), [self](boost::system::error_code ec, size_t) {
      if (ec)
        return;
      try {
        self->c_ = actors::decode_header(std::string_view{self->head_}.substr(self->name_len_));
      } catch (const std::exception& e) {
        self->on_error_(std::string(e.what()) + "; connection closed");
        return;
      }
      self->read_payloads();
    });
  }

  void read_payloads() {
    std::vector<asio::mutable_buffer> bufs;
    for (auto* p : actors::payloads(c_))
      if (!p->empty())
        bufs.push_back(asio::buffer(*p));
    auto self = this->shared_from_this();
    asio::async_read(socket_, bufs, [self](boost::system::error_code ec, size_t) {
      if (ec)
        return;
      self->on_frame_(self->head_.substr(0, self->name_len_), std::move(self->c_));
      self->read_prefix();
    });
  }

  Stream socket_;
  std::array<char, 6> prefix_{};
  std::size_t name_len_ = 0;
  std::string head_;
  actors::contribution c_;
  std::function<void(std::string, actors::contribution&&)> on_frame_;
  std::function<void(const std::string&)> on_error_;
};

} // namespace

struct tcp_data_plane::impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::shared_ptr<ssl::context> tls; ///< null: plaintext
  std::string address;
  std::ostream& log;
  std::mutex log_mu;
  std::atomic<std::uint64_t> delivered{0}, dropped{0};

  /// One outgoing connection to a peer: frames queue while it connects and while a write runs.
  struct peer {
    tcp::socket socket;              ///< plaintext
    std::unique_ptr<tls_stream> tls; ///< with TLS: the connection (and `socket` is unused)
    bool connected = false, writing = false, dropped = false;
    char watch = 0; ///< TLS: the receiver's first byte (it took us), then a read that ends on close
    /// (prefix, node name and header; the frame whose payloads follow)
    std::deque<std::pair<std::string, std::shared_ptr<const actors::outgoing_frame>>> queue;
    peer(asio::io_context& io, ssl::context* ctx) : socket(io) {
      if (ctx)
        tls = std::make_unique<tls_stream>(io, *ctx);
    }
    tcp::socket& lowest() {
      return tls ? tls->next_layer() : socket;
    }
  };
  std::map<std::string, std::shared_ptr<peer>> peers; ///< by address; io thread only
  std::thread thread;

  explicit impl(std::ostream& l) : log(l) {}

  void note(const std::string& what) {
    std::lock_guard lock{log_mu};
    log << "data plane " << address << ": " << what << std::endl;
  }

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec)
        return;
      auto on_frame = [this](std::string node, actors::contribution&& c) {
        if (actors::data_planes::deliver(node, std::move(c))) {
          ++delivered;
        } else {
          ++dropped;
          note("a frame for node '" + node + "', which does not live here, dropped");
        }
      };
      auto on_error = [this](const std::string& what) { note(what); };
      if (tls)
        std::make_shared<inbound<tls_stream>>(tls_stream{std::move(s), *tls}, on_frame, on_error)
          ->start();
      else
        std::make_shared<inbound<tcp::socket>>(std::move(s), on_frame, on_error)->start();
      accept();
    });
  }

  void drop(const std::string& to, const std::shared_ptr<peer>& p, const std::string& why) {
    if (!p->dropped) { // else a failed write and the end of the TLS watch report one loss
      p->dropped = true;
      dropped += p->queue.size();
      note("peer " + to + ": " + why + "; " + std::to_string(p->queue.size())
           + " frame(s) dropped");
    }
    boost::system::error_code ignored;
    p->lowest().close(ignored);
    if (auto i = peers.find(to); i != peers.end() && i->second == p)
      peers.erase(i); // the next frame for it connects anew
  }

  void connect(const std::string& to, std::shared_ptr<peer> p) {
    const auto colon = to.rfind(':');
    tcp::resolver resolver{io};
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(to.substr(0, colon), to.substr(colon + 1), ec);
    if (ec) {
      drop(to, p, "cannot resolve: " + ec.message());
      return;
    }
    asio::async_connect(p->lowest(), endpoints,
                        [this, to, p](boost::system::error_code ec, const tcp::endpoint&) {
                          if (ec) {
                            drop(to, p, "cannot connect: " + ec.message());
                            return;
                          }
                          boost::system::error_code ignored;
                          p->lowest().set_option(tcp::no_delay(true), ignored);
                          if (p->tls) {
                            handshake(to, p);
                            return;
                          }
                          p->connected = true;
                          write_next(to, p);
                        });
  }

  /// The client side of a TLS link: the handshake, then the receiver's byte that says it took
  /// our certificate (TLS 1.3 refuses a client's certificate after the client's handshake
  /// completed), then a read that reports when the peer closes the link.
  void handshake(const std::string& to, std::shared_ptr<peer> p) {
    p->tls->async_handshake(ssl::stream_base::client, [this, to, p](boost::system::error_code ec) {
      if (ec) {
        drop(to, p, "the TLS handshake failed: " + handshake_failure(*p->tls, ec));
        return;
      }
      asio::async_read(*p->tls, asio::buffer(&p->watch, 1),
                       [this, to, p](boost::system::error_code ec, size_t) {
                         if (ec == asio::error::operation_aborted)
                           return;
                         if (ec || p->watch != accepted) {
                           drop(to, p, "the peer refused the TLS link: "
                                         + (ec ? ec.message() : std::string{"a wrong first byte"}));
                           return;
                         }
                         watch(to, p);
                         p->connected = true;
                         write_next(to, p);
                       });
    });
  }

  void watch(const std::string& to, std::shared_ptr<peer> p) {
    asio::async_read(*p->tls, asio::buffer(&p->watch, 1),
                     [this, to, p](boost::system::error_code ec, size_t) {
                       if (ec == asio::error::operation_aborted)
                         return;
                       if (p->queue.empty())
                         p->dropped = true; // a peer that left with nothing owed: no news
                       drop(to, p, ec ? "the peer closed the TLS link: " + ec.message()
                                      : std::string{"the peer sent bytes on a link it only reads"});
                     });
  }

  void write_next(const std::string& to, std::shared_ptr<peer> p) {
    if (!p->connected || p->writing || p->queue.empty())
      return;
    p->writing = true;
    auto& [head, frame] = p->queue.front();
    std::vector<asio::const_buffer> bufs{asio::buffer(head)};
    for (auto view : frame->payloads)
      if (!view.empty())
        bufs.push_back(asio::buffer(view.data(), view.size()));
    auto done = [this, to, p](boost::system::error_code ec, size_t) {
      p->writing = false;
      if (ec) {
        drop(to, p, "write failed: " + ec.message());
        return;
      }
      p->queue.pop_front();
      write_next(to, p);
    };
    if (p->tls)
      asio::async_write(*p->tls, bufs, std::move(done));
    else
      asio::async_write(p->socket, bufs, std::move(done));
  }
};

tcp_data_plane::tcp_data_plane(const std::string& host, std::uint16_t port, std::ostream& log,
                               const tls_settings& tls)
  : impl_(std::make_unique<impl>(log)) {
  if (tls.enabled())
    impl_->tls = make_ssl_context(tls);
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec)
    throw std::runtime_error("data plane: \"" + host + "\" is not an IP address");
  const tcp::endpoint at{ip, port};
  auto& a = impl_->acceptor;
  a.open(at.protocol(), ec);
  if (!ec)
    a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    a.bind(at, ec);
  if (!ec)
    a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("data plane: cannot listen at " + host + ":" + std::to_string(port)
                             + ": " + ec.message());
  impl_->address = host + ":" + std::to_string(a.local_endpoint().port());
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

tcp_data_plane::~tcp_data_plane() {
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    for (auto& [to, p] : impl_->peers)
      p->lowest().close(ec);
    impl_->io.stop();
  });
  impl_->thread.join();
}

const std::string& tcp_data_plane::address() const {
  return impl_->address;
}

void tcp_data_plane::send(const std::string& address, const std::string& node,
                          std::shared_ptr<const actors::outgoing_frame> frame) {
  if (node.size() > 0xffff || frame->header.size() > max_header) {
    ++impl_->dropped;
    impl_->note("a frame for node '" + node + "' with a header of "
                + std::to_string(frame->header.size()) + " bytes is too large; dropped");
    return;
  }
  // Prefix (header length, name length), the node's name and the header: one small string.
  std::string head(6 + node.size() + frame->header.size(), '\0');
  const auto header_len = static_cast<std::uint32_t>(frame->header.size());
  const auto name_len = static_cast<std::uint16_t>(node.size());
  std::memcpy(head.data(), &header_len, 4);
  std::memcpy(head.data() + 4, &name_len, 2);
  std::memcpy(head.data() + 6, node.data(), node.size());
  std::memcpy(head.data() + 6 + node.size(), frame->header.data(), frame->header.size());
  asio::post(impl_->io, [this, address, head = std::move(head), frame = std::move(frame)]() mutable {
    auto& peers = impl_->peers;
    auto i = peers.find(address);
    if (i == peers.end()) {
      auto p = std::make_shared<impl::peer>(impl_->io, impl_->tls.get());
      i = peers.emplace(address, p).first;
      p->queue.emplace_back(std::move(head), std::move(frame));
      impl_->connect(address, p);
      return;
    }
    i->second->queue.emplace_back(std::move(head), std::move(frame));
    impl_->write_next(address, i->second);
  });
}

std::uint64_t tcp_data_plane::delivered() const {
  return impl_->delivered.load();
}

std::uint64_t tcp_data_plane::dropped() const {
  return impl_->dropped.load();
}

} // namespace eoe::net
