#include "net/trace_sink.hpp"

#include "net/tcp_link.hpp"
#include "net/tls_context.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <stdexcept>

namespace eoe::net {

namespace asio = boost::asio;
using asio::ip::tcp;

/// The live stream to a collector: a link used by the writer thread alone, reconnected at
/// most once a second while the collector is away. Connecting and the TLS handshake get 2
/// seconds, a write 5: a collector that does not answer, or stops reading, must not stop the
/// writer (and with it the files, and flush).
struct file_trace_sink::stream {
  std::string host, port;
  asio::io_context io;
  std::shared_ptr<asio::ssl::context> tls; ///< null: plaintext
  std::unique_ptr<tcp_link> link;
  bool connected = false;
  std::chrono::steady_clock::time_point next_try{};

  stream(const std::string& address, const tls_settings& credentials) {
    const auto colon = address.rfind(':');
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (credentials.enabled())
      tls = make_ssl_context(credentials);
  }

  bool ensure() {
    if (connected)
      return true;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_try)
      return false;
    next_try = now + std::chrono::seconds(1);
    boost::system::error_code ec;
    tcp::resolver resolver{io};
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec)
      return false;
    link = std::make_unique<tcp_link>(io, tls.get());
    boost::system::error_code result = asio::error::timed_out;
    asio::async_connect(link->socket(), endpoints,
                        [&](boost::system::error_code ec, const tcp::endpoint&) {
                          if (ec) {
                            result = ec;
                            return;
                          }
                          link->async_handshake(asio::ssl::stream_base::client,
                                                [&](boost::system::error_code ec) { result = ec; });
                        });
    io.restart();
    io.run_for(std::chrono::seconds(2));
    if (result) {
      link->close();
      io.restart();
      io.run(); // the aborted operations end here, while `result` lives
      return false;
    }
    connected = true;
    return send("publish\n");
  }

  /// Sends the text; false (and disconnected) when the collector went away or did not take
  /// it within 5 seconds.
  bool send(std::string_view text) {
    boost::system::error_code result = asio::error::timed_out;
    link->with([&](auto& s) {
      asio::async_write(s, asio::buffer(text),
                        [&](boost::system::error_code ec, std::size_t) { result = ec; });
    });
    io.restart();
    io.run_for(std::chrono::seconds(5));
    if (!result)
      return true;
    connected = false;
    link->close();
    io.restart();
    io.run(); // the aborted write ends here, while `result` lives
    return false;
  }
};

file_trace_sink::file_trace_sink(std::filesystem::path dir, std::string collector,
                                 const tls_settings& tls)
  : dir_(std::move(dir)), collector_(std::move(collector)) {
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec)
      throw std::runtime_error("trace: cannot create the directory " + dir_.string() + ": "
                               + ec.message());
  }
  if (!collector_.empty())
    stream_ = std::make_unique<stream>(collector_, tls);
  writer_ = std::thread([this] { run(); });
}

file_trace_sink::~file_trace_sink() {
  {
    std::lock_guard lock{mu_};
    stop_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

std::filesystem::path file_trace_sink::file_of(const std::string& node) const {
  return dir_ / (node + ".trace.jsonl");
}

void file_trace_sink::record(actors::trace_event e) {
  e.t_ns -= actors::tracing::clock_offset(e.node);
  auto line = actors::to_json_line(e);
  line += '\n';
  std::lock_guard lock{mu_};
  pending_.emplace_back(std::move(e.node), std::move(line));
  ++recorded_;
}

void file_trace_sink::flush() {
  std::unique_lock lock{mu_};
  const auto target = recorded_;
  flush_ = true;
  wake_.notify_all();
  done_.wait(lock, [&] { return written_ >= target; });
}

std::uint64_t file_trace_sink::stream_dropped() const {
  std::lock_guard lock{mu_};
  return dropped_;
}

void file_trace_sink::write_out(std::vector<std::pair<std::string, std::string>>& batch) {
  std::string all;
  for (auto& [node, line] : batch) {
    if (!dir_.empty()) {
      auto f = files_.find(node);
      if (f == files_.end())
        f = files_.emplace(node, std::ofstream{file_of(node), std::ios::app | std::ios::binary}).first;
      f->second << line;
    }
    if (stream_)
      all += line;
  }
  for (auto& [node, f] : files_)
    f.flush();
  if (stream_ && !all.empty()) {
    bool sent = false;
    try {
      sent = stream_->ensure() && stream_->send(all);
    } catch (const std::exception&) { // no TLS session to be had, say: lines of the stream
      stream_->connected = false;     // lost, as with a collector away; the writer goes on
    }
    if (!sent) {
      std::lock_guard lock{mu_};
      dropped_ += batch.size();
    }
  }
}

void file_trace_sink::run() {
  std::vector<std::pair<std::string, std::string>> batch;
  for (;;) {
    bool stopping;
    {
      std::unique_lock lock{mu_};
      wake_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return stop_ || flush_ || pending_.size() >= 4096; });
      batch.swap(pending_);
      flush_ = false;
      stopping = stop_;
    }
    if (!batch.empty())
      write_out(batch);
    {
      std::lock_guard lock{mu_};
      written_ += batch.size();
    }
    done_.notify_all();
    batch.clear();
    if (stopping) {
      std::lock_guard lock{mu_};
      if (pending_.empty())
        return;
    }
  }
}

} // namespace eoe::net
