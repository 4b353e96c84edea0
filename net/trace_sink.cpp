#include "net/trace_sink.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <stdexcept>

namespace eoe::net {

namespace asio = boost::asio;
using asio::ip::tcp;

/// The live stream to a collector: a blocking socket used by the writer thread alone,
/// reconnected at most once a second while the collector is away.
struct file_trace_sink::stream {
  std::string host, port;
  asio::io_context io;
  tcp::socket socket{io};
  bool connected = false;
  std::chrono::steady_clock::time_point next_try{};

  explicit stream(const std::string& address) {
    const auto colon = address.rfind(':');
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
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
    socket = tcp::socket{io};
    asio::connect(socket, endpoints, ec);
    if (ec)
      return false;
    asio::write(socket, asio::buffer(std::string_view{"publish\n"}), ec);
    connected = !ec;
    return connected;
  }

  /// Sends the text; false (and disconnected) when the collector went away.
  bool send(const std::string& text) {
    boost::system::error_code ec;
    asio::write(socket, asio::buffer(text), ec);
    if (ec) {
      connected = false;
      socket.close(ec);
      return false;
    }
    return true;
  }
};

file_trace_sink::file_trace_sink(std::filesystem::path dir, std::string collector)
  : dir_(std::move(dir)), collector_(std::move(collector)) {
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec)
      throw std::runtime_error("trace: cannot create the directory " + dir_.string() + ": "
                               + ec.message());
  }
  if (!collector_.empty())
    stream_ = std::make_unique<stream>(collector_);
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
  if (stream_ && !all.empty() && !(stream_->ensure() && stream_->send(all))) {
    std::lock_guard lock{mu_};
    dropped_ += batch.size();
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
