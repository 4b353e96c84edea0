// Fuzz target: what the network hands the cluster: an HTTP/1.1 request (Beast's parser, with the
// gateway's limits) whose body goes through the /v1/infer parser, and the same bytes as a
// data-plane contribution frame. Errors are std::invalid_argument naming what is wrong.
#include "actors/contribution_codec.hpp"
#include "net/infer_json.hpp"

#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes{reinterpret_cast<const char*>(data), size};
  const eoe::net::infer_body_limits limits{12, 64, 5000};
  try {
    (void) eoe::net::parse_infer_body(bytes, limits);
  } catch (const std::invalid_argument&) {
  }
  try {
    (void) eoe::actors::decode_contribution(bytes);
  } catch (const std::invalid_argument&) {
  }
  http::request_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  parser.header_limit(16 * 1024);
  boost::beast::error_code ec;
  parser.eager(true);
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (!ec && parser.is_done()) {
    try {
      (void) eoe::net::parse_infer_body(parser.get().body(), limits);
    } catch (const std::invalid_argument&) {
    }
  }
  return 0;
}
