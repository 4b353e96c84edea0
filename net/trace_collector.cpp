#include "net/trace_collector.hpp"

#include "net/tcp_link.hpp"
#include "net/tls_context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <deque>
#include <istream>
#include <set>
#include <stdexcept>
#include <thread>

namespace eoe::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr size_t max_behind = size_t{64} << 20;
constexpr size_t max_line = size_t{1} << 20;

class follower : public std::enable_shared_from_this<follower> {
public:
  explicit follower(std::shared_ptr<tcp_link> s) : socket_(std::move(s)) {}

  /// Queues text; false when the follower is too far behind (and is closed).
  bool push(std::shared_ptr<const std::string> text) {
    if (queued_ + text->size() > max_behind) {
      close();
      return false;
    }
    queued_ += text->size();
    queue_.push_back(std::move(text));
    if (queue_.size() == 1)
      write_next();
    return true;
  }

  bool open() const {
    return socket_->is_open();
  }

  void close() {
    socket_->close();
  }

private:
  void write_next() {
    auto self = shared_from_this();
    socket_->with([&](auto& stream) {
      asio::async_write(stream, asio::buffer(*queue_.front()),
                        [self](boost::system::error_code ec, size_t) { self->written(ec); });
    });
  }

  void written(boost::system::error_code ec) {
    queued_ -= queue_.front()->size();
    queue_.pop_front();
    if (ec) {
      close();
      queue_.clear();
      return;
    }
    if (!queue_.empty())
      write_next();
  }

  std::shared_ptr<tcp_link> socket_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  size_t queued_ = 0;
};

} // namespace

struct trace_collector::impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::shared_ptr<asio::ssl::context> tls; ///< null: plaintext
  std::set<std::shared_ptr<follower>> followers;
  std::atomic<std::uint64_t> lines{0};
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec)
        return; // closed
      auto link = std::make_shared<tcp_link>(std::move(s), tls.get());
      link->async_handshake(asio::ssl::stream_base::server,
                            [this, link](boost::system::error_code ec) {
                              if (!ec)
                                greet(link); // else: not one of the cluster's processes
                            });
      accept();
    });
  }

  /// Reads the first line: publish or follow.
  void greet(std::shared_ptr<tcp_link> s) {
    auto buf = std::make_shared<asio::streambuf>(max_line);
    s->with([&](auto& stream) {
      asio::async_read_until(stream, *buf, '\n',
                             [this, s, buf](boost::system::error_code ec, size_t) {
                               if (!ec)
                                 on_role(s, buf);
                             });
    });
  }

  void on_role(std::shared_ptr<tcp_link> s, std::shared_ptr<asio::streambuf> buf) {
    std::istream in{buf.get()};
    std::string role;
    std::getline(in, role);
    if (role == "publish") {
      read_lines(s, buf);
    } else if (role == "follow") {
      followers.insert(std::make_shared<follower>(s));
    } else {
      auto reply = std::make_shared<std::string>(
        "error: the first line must be \"publish\" or \"follow\"\n");
      s->with([&](auto& stream) {
        asio::async_write(stream, asio::buffer(*reply),
                          [s, reply](boost::system::error_code, size_t) { s->close(); });
      });
    }
  }

  /// A publisher's lines, passed on whole to every follower.
  void read_lines(std::shared_ptr<tcp_link> s, std::shared_ptr<asio::streambuf> buf) {
    s->with([&](auto& stream) {
      asio::async_read_until(stream, *buf, '\n',
                             [this, s, buf](boost::system::error_code ec, size_t) {
                               if (!ec) // else the publisher left (or sent a line over 1 MiB)
                                 on_lines(s, buf);
                             });
    });
  }

  void on_lines(std::shared_ptr<tcp_link> s, std::shared_ptr<asio::streambuf> buf) {
    // Everything complete in the buffer goes out as one chunk.
    const auto data = buf->data();
    std::string_view text{static_cast<const char*>(data.data()), data.size()};
    const auto end = text.rfind('\n') + 1;
    auto chunk = std::make_shared<const std::string>(text.substr(0, end));
    buf->consume(end);
    size_t n = 0;
    for (char c : *chunk)
      n += c == '\n';
    lines += n;
    for (auto i = followers.begin(); i != followers.end();)
      i = (*i)->open() && (*i)->push(chunk) ? std::next(i) : followers.erase(i);
    read_lines(s, buf);
  }
};

trace_collector::trace_collector(const std::string& host, std::uint16_t port,
                                 const tls_settings& tls)
  : impl_(std::make_unique<impl>()) {
  if (tls.enabled())
    impl_->tls = make_ssl_context(tls);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec)
    throw std::runtime_error("trace collector: \"" + host + "\" is not an IP address");
  const tcp::endpoint at{address, port};
  impl_->acceptor.open(at.protocol(), ec);
  if (!ec)
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    impl_->acceptor.bind(at, ec);
  if (!ec)
    impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("trace collector: cannot listen at " + host + ":"
                             + std::to_string(port) + ": " + ec.message());
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

trace_collector::~trace_collector() {
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    for (auto& f : impl_->followers)
      f->close();
    impl_->io.stop();
  });
  impl_->thread.join();
}

std::uint16_t trace_collector::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::uint64_t trace_collector::lines() const {
  return impl_->lines.load();
}

} // namespace eoe::net
