#include "net/trace_collector.hpp"

#include "net/tcp_link.hpp"
#include "net/tls_context.hpp"
#include "experts/base/utf8.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <istream>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string_view>
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

/// What is wrong with a publisher's line (without its newline), or nothing: a trace line is
/// one JSON object in well-formed UTF-8. `what` names the line ("line 3").
std::optional<std::string> fault_of(std::string_view line, const std::string& what) {
  if (const auto f = experts::find_invalid_utf8(line))
    return experts::describe(what, *f);
  // nlohmann takes a NUL for the end of its input: {"a":1}<NUL>anything would pass.
  if (const auto nul = line.find('\0'); nul != std::string_view::npos)
    return what + " byte " + std::to_string(nul + 1) + ": a NUL byte (0x00), which no trace "
           + "line holds";
  if (nlohmann::json::accept(line)) {
    const auto first = line.find_first_not_of(" \t\r");
    if (line[first] == '{')
      return std::nullopt;
    return what + " is JSON but not an object";
  }
  // Parsed again only to say why: the message names the byte and quotes the token (controls
  // as <U+0000>; the text is UTF-8 by now), cut to a readable length.
  try {
    [[maybe_unused]] const auto j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    std::string_view why = e.what(); // "[json.exception.parse_error.101] parse error at ..."
    if (why.starts_with("[json.exception.") && why.find("] ") != std::string_view::npos)
      why.remove_prefix(why.find("] ") + 2);
    return what + " is not JSON: " + experts::loggable(why, 200);
  }
  return what + " is not JSON";
}

/// A connection while it says its role, and a publisher's while it sends lines.
struct connection {
  std::shared_ptr<tcp_link> link;
  std::string peer;                  ///< host:port, for the log
  asio::streambuf buf{max_line};     ///< what came and is not passed on yet: one line at most
  std::uint64_t line = 0;            ///< lines read so far
  std::uint64_t noted = 0;           ///< malformed lines named on the log
};

} // namespace

struct trace_collector::impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io}; ///< the next accept after a failed one
  std::shared_ptr<asio::ssl::context> tls; ///< null: plaintext
  std::set<std::shared_ptr<follower>> followers;
  std::ostream& log; ///< the io thread's alone
  std::atomic<std::uint64_t> lines{0}, rejected{0};
  std::thread thread;

  explicit impl(std::ostream& l) : log(l) {}

  void note(const std::string& what) {
    log << "trace collector: " << what << std::endl;
  }

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (!acceptor.is_open())
        return; // closed
      if (ec) {
        // Out of file descriptors, say: the collector must outlive it, without spinning.
        note("cannot accept a connection: " + ec.message() + "; trying again");
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](boost::system::error_code) { accept(); });
        return;
      }
      take(std::move(s));
      accept();
    });
  }

  void take(tcp::socket s) {
    auto c = std::make_shared<connection>();
    boost::system::error_code ec;
    const auto from = s.remote_endpoint(ec);
    c->peer = ec ? std::string{"an unknown peer"}
                 : from.address().to_string() + ":" + std::to_string(from.port());
    try {
      c->link = std::make_shared<tcp_link>(std::move(s), tls.get());
    } catch (const std::exception& e) { // no TLS session to be had: this connection goes
      note("from " + c->peer + ": cannot take the connection: " + e.what() + "; closed");
      return;
    }
    c->link->async_handshake(asio::ssl::stream_base::server,
                             [this, c](boost::system::error_code ec) {
                               if (!ec)
                                 greet(c);
                               else // not one of the cluster's processes
                                 note("from " + c->peer + ": the TLS handshake failed: "
                                      + ec.message() + "; connection closed");
                             });
  }

  /// Reads the first line: publish or follow.
  void greet(std::shared_ptr<connection> c) {
    c->link->with([&](auto& stream) {
      asio::async_read_until(stream, c->buf, '\n',
                             [this, c](boost::system::error_code ec, size_t) {
                               if (!ec)
                                 on_role(c);
                               else if (ec == asio::error::not_found)
                                 note("from " + c->peer + ": no newline in the first "
                                      + std::to_string(max_line)
                                      + " bytes (the line limit); connection closed");
                             });
    });
  }

  void on_role(std::shared_ptr<connection> c) {
    std::istream in{&c->buf};
    std::string role;
    std::getline(in, role);
    if (role == "publish") {
      read_lines(c);
    } else if (role == "follow") {
      followers.insert(std::make_shared<follower>(c->link));
    } else {
      note("from " + c->peer + ": the first line is \"" + experts::loggable(role)
           + "\", not \"publish\" or \"follow\"; connection closed");
      auto reply = std::make_shared<std::string>(
        "error: the first line must be \"publish\" or \"follow\"\n");
      auto s = c->link;
      s->with([&](auto& stream) {
        asio::async_write(stream, asio::buffer(*reply),
                          [s, reply](boost::system::error_code, size_t) { s->close(); });
      });
    }
  }

  /// A publisher's lines, passed on whole to every follower.
  void read_lines(std::shared_ptr<connection> c) {
    c->link->with([&](auto& stream) {
      asio::async_read_until(stream, c->buf, '\n',
                             [this, c](boost::system::error_code ec, size_t) {
                               if (!ec)
                                 on_lines(c);
                               else
                                 on_end(*c, ec);
                             });
    });
  }

  /// The publisher left, or sent a line past the limit (then it is dropped).
  void on_end(connection& c, const boost::system::error_code& ec) {
    if (ec == asio::error::not_found) {
      ++c.line;
      note("from publisher " + c.peer + ": line " + std::to_string(c.line) + " has no newline in "
           + std::to_string(max_line) + " bytes (the line limit); connection closed");
      ++rejected; // after the note, as below
    } else if (c.buf.size() > 0) {
      ++c.line;
      note("from publisher " + c.peer + ": the connection ended inside line "
           + std::to_string(c.line) + " (" + std::to_string(c.buf.size())
           + " bytes without a newline); line dropped");
      ++rejected;
    }
  }

  void on_lines(std::shared_ptr<connection> c) {
    try {
      pass_on(*c);
    } catch (const std::exception& e) { // no memory, say: this publisher goes, the rest stay
      note("from publisher " + c->peer + ": " + e.what() + "; connection closed");
      c->link->close();
      return;
    }
    read_lines(c);
  }

  /// Everything complete in the buffer goes out as one chunk, less the lines that are not
  /// trace lines: those are named on the log (the first few of a connection) and dropped.
  void pass_on(connection& c) {
    constexpr std::uint64_t max_noted = 10;
    const auto data = c.buf.data();
    const std::string_view text{static_cast<const char*>(data.data()), data.size()};
    const auto end = text.rfind('\n') + 1;
    std::string kept; // the lines passed on, once one is dropped
    bool dropped = false;
    std::uint64_t n = 0, bad = 0;
    for (size_t at = 0; at < end;) {
      const auto nl = text.find('\n', at);
      ++c.line;
      if (auto why = fault_of(text.substr(at, nl - at), "line " + std::to_string(c.line))) {
        if (!dropped)
          kept.assign(text.substr(0, at));
        dropped = true;
        ++bad;
        if (++c.noted <= max_noted)
          note("from publisher " + c.peer + ": " + *why + "; line dropped"
               + (c.noted == max_noted ? " (further bad lines of this connection are dropped "
                                         "without a note)"
                                       : ""));
      } else {
        ++n;
        if (dropped)
          kept.append(text.substr(at, nl + 1 - at));
      }
      at = nl + 1;
    }
    auto chunk = std::make_shared<const std::string>(dropped ? std::move(kept)
                                                             : std::string{text.substr(0, end)});
    c.buf.consume(end);
    lines += n;
    rejected += bad; // after the notes: who sees the count sees them
    if (chunk->empty())
      return;
    for (auto i = followers.begin(); i != followers.end();)
      i = (*i)->open() && (*i)->push(chunk) ? std::next(i) : followers.erase(i);
  }
};

trace_collector::trace_collector(const std::string& host, std::uint16_t port,
                                 const tls_settings& tls, std::ostream& log)
  : impl_(std::make_unique<impl>(log)) {
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
  impl_->thread = std::thread([this] {
    // The last guard of the collector's thread: a handler that throws costs its connection
    // (the handlers that know theirs say so), and the loop goes on.
    for (;;) {
      try {
        impl_->io.run();
        return;
      } catch (const std::exception& e) {
        impl_->note(std::string{"a connection failed: "} + e.what() + "; dropped");
      }
    }
  });
}

trace_collector::~trace_collector() {
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->retry.cancel();
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

std::uint64_t trace_collector::rejected() const {
  return impl_->rejected.load();
}

} // namespace eoe::net
