#include "net/trace_collector.hpp"

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
  explicit follower(tcp::socket s) : socket_(std::move(s)) {}

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
    return socket_.is_open();
  }

  void close() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

private:
  void write_next() {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(*queue_.front()),
                      [self](boost::system::error_code ec, size_t) {
                        self->queued_ -= self->queue_.front()->size();
                        self->queue_.pop_front();
                        if (ec) {
                          self->close();
                          self->queue_.clear();
                          return;
                        }
                        if (!self->queue_.empty())
                          self->write_next();
                      });
  }

  tcp::socket socket_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  size_t queued_ = 0;
};

} // namespace

struct trace_collector::impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::set<std::shared_ptr<follower>> followers;
  std::atomic<std::uint64_t> lines{0};
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec)
        return; // closed
      greet(std::make_shared<tcp::socket>(std::move(s)));
      accept();
    });
  }

  /// Reads the first line: publish or follow.
  void greet(std::shared_ptr<tcp::socket> s) {
    auto buf = std::make_shared<asio::streambuf>(max_line);
    asio::async_read_until(*s, *buf, '\n', [this, s, buf](boost::system::error_code ec, size_t) {
      if (ec)
        return;
      std::istream in{buf.get()};
      std::string role;
      std::getline(in, role);
      if (role == "publish") {
        read_lines(s, buf);
      } else if (role == "follow") {
        followers.insert(std::make_shared<follower>(std::move(*s)));
      } else {
        auto reply = std::make_shared<std::string>(
          "error: the first line must be \"publish\" or \"follow\"\n");
        asio::async_write(*s, asio::buffer(*reply), [s, reply](boost::system::error_code, size_t) {
          boost::system::error_code ignored;
          s->close(ignored);
        });
      }
    });
  }

  /// A publisher's lines, passed on whole to every follower.
  void read_lines(std::shared_ptr<tcp::socket> s, std::shared_ptr<asio::streambuf> buf) {
    asio::async_read_until(*s, *buf, '\n', [this, s, buf](boost::system::error_code ec, size_t) {
      if (ec)
        return; // the publisher left (or sent a line over 1 MiB)
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
    });
  }
};

trace_collector::trace_collector(const std::string& host, std::uint16_t port)
  : impl_(std::make_unique<impl>()) {
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
