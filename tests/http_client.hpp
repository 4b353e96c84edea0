#pragma once
// The tests' HTTP client: raw bytes on a new connection to a gateway on loopback, one
// response read back (Beast's parser), so a test can send exactly the bytes it means.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace eoe::test {

struct http_reply {
  unsigned status = 0;
  std::string body;
  std::string content_type, allow, www_authenticate, request_id, retry_after;

  /// The "error" of a JSON error body ("" when there is none, or the body is not JSON).
  std::string error() const {
    const auto j = nlohmann::json::parse(body, nullptr, false);
    return j.is_object() && j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>()
                                                                           : "";
  }
};

/// Sends raw bytes on a new connection and reads one response (status 0: none came).
inline http_reply raw_http(std::uint16_t port, const std::string& bytes) {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  asio::io_context io;
  asio::ip::tcp::socket s{io};
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  boost::beast::error_code ec;
  // A server that refuses a body early closes while it is still being written: read anyway.
  asio::write(s, asio::buffer(bytes), ec);
  boost::beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(s, buf, parser, ec);
  if (ec)
    return {0, "read failed: " + ec.message(), "", "", "", "", ""};
  const auto& res = parser.get();
  return {res.result_int(),
          res.body(),
          std::string(res[http::field::content_type]),
          std::string(res[http::field::allow]),
          std::string(res[http::field::www_authenticate]),
          std::string(res["X-Request-Id"]),
          std::string(res[http::field::retry_after])};
}

/// One request with a Content-Length body (Connection: close).
inline http_reply call_http(std::uint16_t port, const std::string& method, const std::string& target,
                            const std::string& body = "", const std::string& extra_headers = "") {
  const std::string r = method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                        + extra_headers + "Content-Type: application/json\r\nContent-Length: "
                        + std::to_string(body.size()) + "\r\n\r\n" + body;
  return raw_http(port, r);
}

} // namespace eoe::test
