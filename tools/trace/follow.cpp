#include "follow.hpp"

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
  std::string what;
  switch (e.kind) {
    case actors::trace_kind::send:
      what = "send " + e.name + " -> " + e.peer;
      break;
    case actors::trace_kind::receive:
      what = "recv " + e.name + " <- " + e.peer;
      break;
    default:
      what = std::string(actors::to_string(e.kind)) + " " + e.name;
  }
  char tail[160];
  std::snprintf(tail, sizeof tail, "  req %llu", static_cast<unsigned long long>(e.request));
  std::string out = std::string(head) + "  " + e.node + "  " + e.actor + "  " + what + tail;
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

std::uint64_t follow(const std::string& address, std::ostream& out, std::uint64_t limit) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw std::runtime_error("follow: expected HOST:PORT, got \"" + address + "\"");
  asio::io_context io;
  tcp::socket socket{io};
  boost::system::error_code ec;
  tcp::resolver resolver{io};
  auto endpoints = resolver.resolve(address.substr(0, colon), address.substr(colon + 1), ec);
  if (!ec)
    asio::connect(socket, endpoints, ec);
  if (ec)
    throw std::runtime_error("follow: no trace collector at " + address + ": " + ec.message());
  asio::write(socket, asio::buffer(std::string_view{"follow\n"}), ec);
  asio::streambuf buf;
  std::uint64_t shown = 0;
  std::string line;
  while (limit == 0 || shown < limit) {
    asio::read_until(socket, buf, '\n', ec);
    if (ec)
      break; // the collector closed
    std::istream in{&buf};
    std::getline(in, line);
    try {
      out << one_line(actors::parse_trace_line(line)) << "\n" << std::flush;
    } catch (const std::exception& e) {
      out << "(a line the collector sent does not parse: " << e.what() << ")\n";
    }
    ++shown;
  }
  return shown;
}

} // namespace eoe::trace_tool
