// Fuzz target: what the network hands the cluster, from bytes to the written answer, the way the
// gateway runs it: Beast's parser with the gateway's limits, then the route (parse, validate),
// then the answer or the error made and serialized. For the calls the cluster would answer, the
// answers the gateway would write: an inference result of the request's own shape, and the
// coordinator's refusal that quotes a hot-add's node name. Every answer must be a well-formed
// HTTP response whose JSON body parses back (so it is UTF-8). The same bytes also go through the
// /v1/infer body parser alone and, as a data-plane contribution frame, the frame decoder.
#include "actors/contribution_codec.hpp"
#include "actors/mesh_errc.hpp"
#include "net/gateway_routes.hpp"
#include "net/infer_json.hpp"
#include "experts/utf8.hpp"

#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>

namespace http = boost::beast::http;
using namespace eoe;

namespace {

/// Serializes the answer as the gateway writes it, reads it back, and checks the body.
void write_and_check(net::gateway_reply r) {
  const bool json_body = r.content_type == "application/json";
  const auto res = net::to_response(std::move(r), 11, false);
  std::ostringstream out;
  out << res;
  const std::string wire = out.str();
  http::response_parser<http::string_body> back;
  back.body_limit(1 << 26);
  boost::beast::error_code ec;
  back.eager(true);
  back.put(boost::asio::buffer(wire.data(), wire.size()), ec);
  if (ec || !back.is_done())
    __builtin_trap(); // not a well-formed HTTP response
  const auto& body = back.get().body();
  if (experts::find_invalid_utf8(body))
    __builtin_trap();
  if (json_body && nlohmann::json::parse(body, nullptr, false).is_discarded())
    __builtin_trap();
}

void answer(net::gateway_action action) {
  std::visit(
    [](auto& a) {
      using T = std::decay_t<decltype(a)>;
      if constexpr (std::is_same_v<T, net::gateway_reply>) {
        write_and_check(std::move(a));
      } else if constexpr (std::is_same_v<T, net::infer_call>) {
        actors::infer_result res;
        res.request = 1;
        res.epoch = 1;
        res.output = a.request.tokens;
        write_and_check(net::infer_reply(res));
        write_and_check(net::mesh_error_reply(actors::make_mesh_error(
          actors::mesh_errc::deadline_exceeded, "request 1: no answer from expert 0.0")));
      } else if constexpr (std::is_same_v<T, net::add_expert_call>) {
        // The coordinator quotes what it was given.
        write_and_check(net::mesh_error_reply(actors::make_mesh_error(
          actors::mesh_errc::bad_request, "add expert: no live node '" + a.node + "' (init " + a.init + ")")));
        write_and_check(net::epoch_reply(a.layer));
      } else if constexpr (std::is_same_v<T, net::remove_expert_call>) {
        write_and_check(net::epoch_reply(a.layer + a.id));
      } else {
        actors::cluster_status st;
        st.epoch = 1;
        st.nodes = {"n1"};
        write_and_check(net::topology_reply(st));
        write_and_check(net::health_reply(st));
      }
    },
    action);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes{reinterpret_cast<const char*>(data), size};
  net::route_settings settings;
  settings.infer = {12, 64, 5000};
  settings.admin_token = "fuzz-token";
  try {
    (void) net::parse_infer_body(bytes, settings.infer);
  } catch (const std::invalid_argument& e) {
    write_and_check(net::error_reply(http::status::bad_request, e.what()));
  }
  try {
    (void) actors::decode_contribution(bytes);
  } catch (const std::invalid_argument&) {
  }
  // Any bytes as the text of an error.
  write_and_check(net::error_reply(http::status::bad_request, bytes));
  http::request_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  parser.header_limit(16 * 1024);
  boost::beast::error_code ec;
  parser.eager(true);
  parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec)
    write_and_check(net::read_error_reply(ec, 1 << 20));
  else if (parser.is_done())
    answer(net::route(parser.get(), settings));
  return 0;
}
