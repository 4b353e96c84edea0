#include "follow.hpp"

#include "trace_log.hpp"

#include "net/tcp_link.hpp"
#include "net/tls_context.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <istream>
#include <ostream>
#include <stdexcept>

namespace eoe::trace_tool {

namespace asio = boost::asio;
using asio::ip::tcp;

std::string one_line(const actors::trace_event& e) {
  const std::time_t secs = static_cast<std::time_t>(e.t_ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char head[64];
  std::snprintf(head, sizeof head, "%02d:%02d:%02d.%06lld", tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(e.t_ns % 1'000'000'000 / 1000));
  // The names come from the collector's stream: shown printable, for a terminal.
  std::string what;
  switch (e.kind) {
    case actors::trace_kind::send:
      what = "send " + printable(e.name) + " -> " + printable(e.peer);
      break;
    case actors::trace_kind::receive:
      what = "recv " + printable(e.name) + " <- " + printable(e.peer);
      break;
    default:
      what = std::string(actors::to_string(e.kind)) + " " + printable(e.name);
  }
  char tail[160];
  std::snprintf(tail, sizeof tail, "  req %llu", static_cast<unsigned long long>(e.request));
  std::string out = std::string(head) + "  " + printable(e.node) + "  " + printable(e.actor)
                    + "  " + what + tail;
  if (e.layer >= 0)
    out += " layer " + std::to_string(e.layer);
  if (e.bytes)
    out += " " + std::to_string(e.bytes) + " B";
  if (e.rows)
    out += " " + std::to_string(e.rows) + " tokens";
  if (!std::isnan(e.score)) {
    std::snprintf(tail, sizeof tail, " score %.3f", e.score);
    out += tail;
  }
  if (e.dur_ns) {
    std::snprintf(tail, sizeof tail, " %.1f us", static_cast<double>(e.dur_ns) / 1e3);
    out += tail;
  }
  return out;
}

std::uint64_t follow(const std::string& address, std::ostream& out, std::uint64_t limit,
                     const net::tls_settings& tls) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw std::runtime_error("follow: expected HOST:PORT, got \"" + address + "\"");
  std::shared_ptr<asio::ssl::context> ctx;
  if (tls.enabled())
    ctx = net::make_ssl_context(tls);
  asio::io_context io;
  net::tcp_link link{io, ctx.get()};
  boost::system::error_code ec;
  tcp::resolver resolver{io};
  auto endpoints = resolver.resolve(address.substr(0, colon), address.substr(colon + 1), ec);
  if (ec)
    throw std::runtime_error("follow: no trace collector at " + address + ": " + ec.message());
  // Connecting and the TLS handshake get 5 seconds; then the link blocks.
  ec = asio::error::timed_out;
  const char* step = "connect";
  asio::async_connect(link.socket(), endpoints, [&](boost::system::error_code e, const tcp::endpoint&) {
    if (e) {
      ec = e;
      return;
    }
    step = "TLS handshake";
    link.async_handshake(asio::ssl::stream_base::client, [&](boost::system::error_code e) { ec = e; });
  });
  io.run_for(std::chrono::seconds(5));
  if (ec) {
    link.close();
    io.restart();
    io.run();
    throw std::runtime_error("follow: no trace collector at " + address + " (" + step
                             + "): " + ec.message());
  }
  link.with([&](auto& s) { asio::write(s, asio::buffer(std::string_view{"follow\n"}), ec); });
  asio::streambuf buf;
  std::uint64_t shown = 0;
  std::string line;
  while (limit == 0 || shown < limit) {
    link.with([&](auto& s) { asio::read_until(s, buf, '\n', ec); });
    if (ec)
      break; // the collector closed
    std::istream in{&buf};
    std::getline(in, line);
    try {
      out << one_line(parse_line(line)) << "\n" << std::flush;
    } catch (const std::exception& e) {
      out << "(a line the collector sent does not parse: " << e.what() << ")\n";
    }
    ++shown;
  }
  return shown;
}

} // namespace eoe::trace_tool
