#include "net/tcp_data_plane.hpp"

#include "actors/contribution_codec.hpp"
#include "net/tls_context.hpp"
#include "experts/base/utf8.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <thread>

namespace eoe::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using tls_stream = ssl::stream<tcp::socket>;

namespace {

/// Headers larger than this are refused (a real one is under 200 bytes plus the node names).
constexpr std::uint32_t max_header = std::uint32_t{1} << 20;

/// A payload up to this size is read straight into place; a longer one grows as its bytes
/// arrive (doubling), so that a length a peer declares but never sends costs no memory.
constexpr std::uint64_t eager_payload = std::uint64_t{16} << 20;

/// A plaintext link's receive buffer (see link::read).
constexpr std::size_t read_buffer_bytes = 64 * 1024;

/// Incoming connections at once; past it a new one is closed (each has a thread).
constexpr std::size_t max_inbound = 1024;

/// After a failed accept (no file descriptors left, say), the next try waits this long.
constexpr auto accept_retry = std::chrono::milliseconds(100);

/// What the receiving end of a TLS link sends once the handshake is done, its only byte: TLS 1.3
/// tells a client nothing when its certificate is accepted, and without it frames sent to a
/// peer that refused us would vanish unreported.
constexpr char accepted = 'A';

/// How long a TLS handshake (and the byte after it) may take before the link is given up.
constexpr int handshake_seconds = 10;

/// Why a TLS handshake failed, with what OpenSSL found wrong with the peer's certificate.
std::string handshake_failure(tls_stream& s, const boost::system::error_code& ec) {
  std::string why = ec.message();
  if (const auto v = SSL_get_verify_result(s.native_handle()); v != X509_V_OK)
    why += std::string{" (its certificate: "} + X509_verify_cert_error_string(v) + ")";
  return why;
}

/// Shuts a socket down unless the guard ends within `seconds`: a TLS handshake with a peer
/// that stalls must not hold a connection's thread forever, and socket timeouts cannot bound
/// it (asio's blocking calls wait in poll() again after SO_RCVTIMEO expires).
class stall_guard {
public:
  stall_guard(tcp::socket& s, int seconds)
    : thread_([this, &s, seconds] {
        std::unique_lock lock{mu_};
        if (!cv_.wait_for(lock, std::chrono::seconds(seconds), [this] { return done_; })) {
          fired_ = true;
          boost::system::error_code ignored;
          s.shutdown(tcp::socket::shutdown_both, ignored); // ends the blocked call
        }
      }) {}

  ~stall_guard() {
    {
      std::lock_guard lock{mu_};
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  /// Ends the guard; whether it had shut the socket down by then.
  bool stop() {
    std::lock_guard lock{mu_};
    done_ = true;
    cv_.notify_one();
    return fired_;
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  ///< guarded by mu_
  bool fired_ = false; ///< guarded by mu_
  std::thread thread_;
};

/// One connection, plaintext or TLS, used with blocking calls from one thread.
class link {
public:
  link(tcp::socket s, ssl::context* tls) {
    if (tls)
      tls_ = std::make_unique<tls_stream>(std::move(s), *tls);
    else
      plain_.emplace(std::move(s));
  }

  tcp::socket& socket() {
    return tls_ ? tls_->next_layer() : *plain_;
  }
  tls_stream* tls() {
    return tls_.get();
  }

  /// Reads n bytes; how many came (fewer: the stream ended, or an error). Plaintext goes
  /// through a buffer: a frame's prefix, header and small payloads arrive together, and one
  /// receive takes them all (a receive each was 5-6 system calls per frame); a read of a
  /// buffer's size or more goes straight into place.
  size_t read(char* p, size_t n) {
    if (tls_) {
      boost::system::error_code ec;
      return asio::read(*tls_, asio::buffer(p, n), ec);
    }
    size_t done = take_buffered(p, n);
    while (done < n) {
      if (n - done >= read_buffer_bytes)
        return done + read_exactly(plain_->native_handle(), p + done, n - done);
      if (!buffer_)
        buffer_ = std::make_unique<char[]>(read_buffer_bytes);
      const auto got = ::recv(plain_->native_handle(), buffer_.get(), read_buffer_bytes, 0);
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        break;
      begin_ = 0;
      end_ = static_cast<size_t>(got);
      done += take_buffered(p + done, n - done);
    }
    return done;
  }

  /// Writes every byte of bufs. In as few system calls as the kernel allows: asio::write's own
  /// completion conditions cut every call at 64 KiB, which cost 1 MiB tensors half their rate
  /// (16 sends and as many wake-ups of the receiver per frame, measured).
  template <class Buffers>
  void write(const Buffers& bufs, boost::system::error_code& ec) {
    const auto whole = [](const boost::system::error_code& e, std::size_t) -> std::size_t {
      return e ? 0 : std::size_t{1} << 30;
    };
    if (tls_)
      asio::write(*tls_, bufs, whole, ec);
    else
      asio::write(*plain_, bufs, whole, ec);
  }

  /// Ends a read or write blocked in another thread.
  void shutdown() {
    boost::system::error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
  }

private:
  static size_t read_exactly(int fd, char* p, size_t n);

  /// Moves up to n buffered bytes to p; how many.
  size_t take_buffered(char* p, size_t n) {
    const size_t k = std::min(n, end_ - begin_);
    if (k == 0)
      return 0; // (buffer_ may be null: memcpy must not see it)
    std::memcpy(p, buffer_.get() + begin_, k);
    begin_ += k;
    return k;
  }

  std::optional<tcp::socket> plain_;
  std::unique_ptr<tls_stream> tls_;
  std::unique_ptr<char[]> buffer_; ///< plaintext bytes received, not yet read: [begin_, end_)
  size_t begin_ = 0;
  size_t end_ = 0;
};

/// Reads n bytes into p; how many came (fewer at the end of the stream or on an error). A
/// blocking receive that waits for all of them (MSG_WAITALL): the kernel fills the buffer as
/// segments arrive, with none of the wake-ups, readiness polls and short reads of an event loop.
size_t link::read_exactly(int fd, char* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    const auto got = ::recv(fd, p + done, n - done, MSG_WAITALL);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    done += static_cast<size_t>(got);
  }
  return done;
}

/// One incoming connection, read on a thread of its own (blocking, like a plain socket pair):
/// with TLS the server side of the handshake and the byte that accepts the peer first; then
/// frames: the prefix, node name and header, then the payloads straight into the
/// contribution's strings; each frame is delivered as it completes.
class inbound {
public:
  /// Throws std::system_error when no thread can be started (the connection is closed).
  inbound(tcp::socket s, ssl::context* tls, std::string peer,
          std::function<void(std::string, actors::contribution&&)> on_frame,
          std::function<void(const std::string&)> on_error)
    : link_(std::move(s), tls), peer_(std::move(peer)), on_frame_(std::move(on_frame)),
      on_error_(std::move(on_error)) {
    boost::system::error_code ec;
    link_.socket().set_option(tcp::no_delay(true), ec);
    thread_ = std::thread([this] { run(); });
  }

  /// Stops reading (the peer's connection is shut down) and waits for the reader.
  ~inbound() {
    link_.shutdown();
    thread_.join();
  }

  /// Whether the reader has ended (the connection is shut down; only the join is left).
  bool done() const {
    return done_.load();
  }

private:
  /// The server side of a TLS link; false (and reported) when the peer is refused.
  bool accept_tls() {
    auto& s = *link_.tls();
    stall_guard guard{link_.socket(), handshake_seconds};
    boost::system::error_code ec;
    s.handshake(ssl::stream_base::server, ec);
    if (!ec)
      asio::write(s, asio::buffer(&accepted, 1), ec);
    const bool stalled = guard.stop();
    if (ec || stalled) {
      on_error_("the TLS handshake with a peer at " + peer_ + " failed: "
                + (stalled ? "no answer within " + std::to_string(handshake_seconds) + " s"
                           : handshake_failure(s, ec))
                + "; connection closed");
      return false;
    }
    return true;
  }

  /// The connection's boundary: whatever a peer's bytes make go wrong ends this connection
  /// (named on the log), never the process; the peer sees it closed at once.
  void run() {
    try {
      if (!link_.tls() || accept_tls())
        read_frames();
    } catch (const std::exception& e) {
      on_error_("from " + peer_ + ": " + e.what() + "; connection closed");
    }
    link_.shutdown();
    done_ = true;
  }

  /// Frames until the peer leaves (quietly, between frames) or sends one that is malformed
  /// (thrown, or reported here when the connection ends inside it).
  void read_frames() {
    std::array<char, 6> prefix{};
    std::string head;
    std::array<std::uint64_t, 5> lengths{};
    for (;;) {
      if (const auto got = link_.read(prefix.data(), prefix.size()); got < prefix.size()) {
        if (got > 0) // none: the peer left between frames
          ended_inside("its 6-byte prefix after " + std::to_string(got) + " bytes");
        return;
      }
      std::uint32_t header_len;
      std::uint16_t name_len;
      std::memcpy(&header_len, prefix.data(), 4);
      std::memcpy(&name_len, prefix.data() + 4, 2);
      if (header_len == 0 || header_len > max_header)
        throw std::invalid_argument("a frame header of " + std::to_string(header_len)
                                    + " bytes (bytes 0-3 of the frame; allowed: 1 to "
                                    + std::to_string(max_header) + ")");
      head.resize(name_len + std::size_t{header_len});
      if (const auto got = link_.read(head.data(), head.size()); got < head.size())
        return ended_inside("its node name and header after " + std::to_string(got) + " of "
                            + std::to_string(head.size()) + " bytes");
      auto c = actors::decode_header(std::string_view{head}.substr(name_len), lengths);
      const auto ps = actors::payloads(c);
      for (size_t i = 0; i < ps.size(); ++i)
        if (const auto got = read_payload(*ps[i], lengths[i]); got < lengths[i])
          return ended_inside("payload " + std::string{actors::payload_name(i)} + " after "
                              + std::to_string(got) + " of " + std::to_string(lengths[i])
                              + " bytes");
      on_frame_(head.substr(0, name_len), std::move(c));
    }
  }

  void ended_inside(const std::string& what) {
    on_error_("from " + peer_ + ": the connection ended inside a frame, in " + what
              + "; frame dropped");
  }

  /// Reads n bytes into s; how many came (n unless the stream ended). Past eager_payload the
  /// string grows with what arrives: resize_and_overwrite keeps what was read and writes
  /// nothing new (the size comes from the capture: libstdc++ 12 passes the capacity).
  std::uint64_t read_payload(std::string& s, std::uint64_t n) {
    std::uint64_t have = 0;
    while (have < n) {
      const auto size = static_cast<size_t>(std::min(n, std::max(eager_payload, 2 * have)));
      s.resize_and_overwrite(size, [size](char*, size_t) { return size; });
      const auto want = size - static_cast<size_t>(have);
      const auto got = link_.read(s.data() + have, want);
      have += got;
      if (got < want) {
        s.resize(static_cast<size_t>(have));
        return have;
      }
    }
    return have;
  }

  link link_;
  const std::string peer_; ///< "host:port", for the log
  std::function<void(std::string, actors::contribution&&)> on_frame_;
  std::function<void(const std::string&)> on_error_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

/// A frame queued for a peer: prefix, node name and header; the frame whose payloads follow.
using queued_frame = std::pair<std::string, std::shared_ptr<const actors::outgoing_frame>>;

/// One outgoing connection to a peer, written on a thread of its own with blocking writes
/// (measured: an event loop's non-blocking writes, which stop at every full socket buffer to
/// wait for readiness, moved 1 MiB frames at 0.6 of the rate of blocking ones). Frames queue
/// while it connects and while a write runs, and go out in order. When the peer cannot be
/// reached, refuses our certificate or a write fails, what is queued is dropped and reported,
/// and the next frame connects anew.
class outbound {
public:
  /// tls: null for plaintext. report(frames dropped, why) is called on this connection's
  /// thread.
  outbound(std::string address, ssl::context* tls,
           std::function<void(std::uint64_t, const std::string&)> report)
    : address_(std::move(address)), tls_(tls), report_(std::move(report)),
      thread_([this] { run(); }) {}

  ~outbound() {
    {
      std::lock_guard lock{mu_};
      stopping_ = true;
      if (link_)
        link_->shutdown(); // ends a write in progress
    }
    cv_.notify_one();
    thread_.join();
  }

  void push(queued_frame f) {
    {
      std::lock_guard lock{mu_};
      queue_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

private:
  void run() {
    std::unique_lock lock{mu_};
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      if (!link_) {
        lock.unlock();
        auto [l, why] = connect();
        lock.lock();
        if (!l) {
          fail(why, 0);
          continue;
        }
        link_ = std::move(l);
      }
      auto [head, frame] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      std::vector<asio::const_buffer> bufs{asio::buffer(head)};
      for (auto view : frame->payloads)
        if (!view.empty())
          bufs.push_back(asio::buffer(view.data(), view.size()));
      boost::system::error_code ec;
      link_->write(bufs, ec);
      lock.lock();
      if (ec && !stopping_)
        fail("write failed: " + ec.message(), 1);
    }
  }

  /// A connected link (with TLS: handshaken and accepted by the peer), or why there is none.
  std::pair<std::unique_ptr<link>, std::string> connect() {
    const auto colon = address_.rfind(':');
    tcp::resolver resolver{io_};
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(address_.substr(0, colon), address_.substr(colon + 1), ec);
    if (ec)
      return {nullptr, "cannot resolve: " + ec.message()};
    tcp::socket s{io_};
    asio::connect(s, endpoints, ec);
    if (ec)
      return {nullptr, "cannot connect: " + ec.message()};
    s.set_option(tcp::no_delay(true), ec);
    auto l = std::make_unique<link>(std::move(s), tls_);
    if (auto* t = l->tls()) {
      const auto silent = "no answer within " + std::to_string(handshake_seconds) + " s";
      stall_guard guard{l->socket(), handshake_seconds};
      t->handshake(ssl::stream_base::client, ec);
      if (ec)
        return {nullptr, "the TLS handshake failed: "
                           + (guard.stop() ? silent : handshake_failure(*t, ec))};
      char first = 0;
      asio::read(*t, asio::buffer(&first, 1), ec);
      if (guard.stop())
        return {nullptr, "the peer refused the TLS link: " + silent};
      if (ec || first != accepted)
        return {nullptr, "the peer refused the TLS link: "
                           + (ec ? ec.message() : std::string{"a wrong first byte"})};
    }
    return {std::move(l), ""};
  }

  /// Drops what is queued and the `unsent` frames taken from it (mu_ held), and closes the
  /// connection.
  void fail(const std::string& why, std::uint64_t unsent) {
    const auto n = queue_.size() + unsent;
    queue_.clear();
    link_.reset();
    report_(n, why);
  }

  asio::io_context io_; ///< for the blocking calls only; never run
  const std::string address_;
  ssl::context* tls_;
  std::function<void(std::uint64_t, const std::string&)> report_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<queued_frame> queue_; ///< guarded by mu_
  bool stopping_ = false;          ///< guarded by mu_
  std::unique_ptr<link> link_;     ///< set and reset under mu_, written without it
  std::thread thread_;
};

} // namespace

struct tcp_data_plane::impl {
  asio::io_context io; ///< runs the acceptor
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io}; ///< the next accept after a failed one
  std::shared_ptr<ssl::context> tls; ///< null: plaintext
  std::string address;
  std::ostream& log;
  std::mutex log_mu;
  std::atomic<std::uint64_t> delivered{0}, dropped{0};
  std::mutex peers_mu;
  std::map<std::string, std::unique_ptr<outbound>> peers; ///< by address; guarded by peers_mu
  std::vector<std::unique_ptr<inbound>> inbound_;         ///< io thread only, until destruction
  std::thread thread;

  explicit impl(std::ostream& l) : log(l) {}

  void note(const std::string& what) {
    std::lock_guard lock{log_mu};
    log << "data plane " << address << ": " << what << std::endl;
  }

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (!acceptor.is_open())
        return; // closed: the data plane is going
      if (ec) {
        // Out of file descriptors, say: the listener must outlive it, without spinning.
        note("cannot accept a connection: " + ec.message() + "; trying again");
        retry.expires_after(accept_retry);
        retry.async_wait([this](boost::system::error_code) { accept(); });
        return;
      }
      take(std::move(s));
      accept();
    });
  }

  /// A new incoming connection, on a reader thread of its own (or closed, with a note).
  void take(tcp::socket s) {
    std::erase_if(inbound_, [](const auto& in) { return in->done(); }); // joins ended readers
    boost::system::error_code ec;
    const auto from = s.remote_endpoint(ec);
    const auto peer = ec ? std::string{"an unknown peer"}
                         : from.address().to_string() + ":" + std::to_string(from.port());
    if (inbound_.size() >= max_inbound) {
      note("from " + peer + ": " + std::to_string(max_inbound)
           + " connections are open already; connection closed");
      return;
    }
    try {
      inbound_.push_back(std::make_unique<inbound>(
        std::move(s), tls.get(), peer,
        [this, peer](std::string node, actors::contribution&& c) {
          if (actors::data_planes::deliver(node, std::move(c))) {
            ++delivered;
          } else {
            note("from " + peer + ": a frame for node '" + experts::loggable(node)
                 + "', which does not live here, dropped");
            ++dropped; // after the note: who sees the count sees the note
          }
        },
        [this](const std::string& what) { note(what); }));
    } catch (const std::exception& e) { // no thread to be had (or no memory): this one goes
      note("from " + peer + ": cannot take the connection: " + e.what() + "; closed");
    }
  }

  outbound& peer(const std::string& to) {
    std::lock_guard lock{peers_mu};
    auto& p = peers[to];
    if (!p)
      p = std::make_unique<outbound>(to, tls.get(), [this, to](std::uint64_t n, const std::string& why) {
        note("peer " + to + ": " + why + "; " + std::to_string(n) + " frame(s) dropped");
        dropped += n; // after the note: who sees the count sees the note
      });
    return *p;
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
    impl_->retry.cancel();
    impl_->io.stop();
  });
  impl_->thread.join();
  impl_->peers.clear();    // ends every outgoing connection and joins its writer
  impl_->inbound_.clear(); // shuts every incoming connection down and joins its reader
}

const std::string& tcp_data_plane::address() const {
  return impl_->address;
}

void tcp_data_plane::send(const std::string& address, const std::string& node,
                          std::shared_ptr<const actors::outgoing_frame> frame) {
  if (node.size() > 0xffff || frame->header.size() > max_header) {
    impl_->note("a frame for node '" + node + "' with a header of "
                + std::to_string(frame->header.size()) + " bytes is too large; dropped");
    ++impl_->dropped;
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
  impl_->peer(address).push({std::move(head), std::move(frame)});
}

std::uint64_t tcp_data_plane::delivered() const {
  return impl_->delivered.load();
}

std::uint64_t tcp_data_plane::dropped() const {
  return impl_->dropped.load();
}

} // namespace eoe::net
