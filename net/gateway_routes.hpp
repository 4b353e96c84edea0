#pragma once
// What the HTTP gateway answers, as plain functions with no socket and no actor, so that the
// whole path from a request's bytes to the written answer is tested and fuzzed alone:
// `route` turns a parsed request into an answer at once (an error, mostly) or a call the
// cluster must answer; the *_reply functions turn what the cluster answered into the answer
// written. Every body is valid UTF-8 JSON whatever the request held: text from outside is
// checked (a body or target that is not UTF-8 is a 400 naming the byte) and quoted through
// experts/utf8, never echoed raw.

#include "actors/messages.hpp"
#include "actors/plan.hpp"
#include "net/completion_json.hpp"
#include "net/infer_json.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include <caf/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace eoe::net {

namespace http = boost::beast::http;

using http_request = http::request<http::string_body>;
using http_response = http::response<http::string_body>;

/// An answer to write.
struct gateway_reply {
  http::status status = http::status::ok;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<http::field, std::string>> headers;
  /// An inference request refused at once: its outcome in the metrics ("bad_request").
  std::string outcome;
};

/// What a route decides with: the model's input width, the limits, the admin token.
struct route_settings {
  infer_body_limits infer;
  std::string admin_token; ///< "": admin calls are refused (403)
  bool language_model = false; ///< /v1/completions is served
  completion_limits completions; ///< its model id and limits
  std::int64_t created = 0;      ///< when the gateway started (Unix seconds): the model's
};

/// Calls the cluster must answer.
struct infer_call {
  actors::infer_request request;
};
struct completion_call {
  completion_request request;
};
struct health_call {};
struct topology_call {};
struct metrics_call {};
struct add_expert_call {
  std::uint32_t layer = 0;
  std::string node;
  std::string init = "zero";
};
struct remove_expert_call {
  std::uint32_t layer = 0;
  std::uint32_t id = 0;
};

using gateway_action = std::variant<gateway_reply, infer_call, completion_call, health_call,
                                    topology_call, metrics_call, add_expert_call,
                                    remove_expert_call>;

/// The route of a request: an answer, or the call to make. Throws nothing but std::bad_alloc;
/// every fault of the request is an answer.
gateway_action route(const http_request& req, const route_settings& s);

/// The answer to a request Beast could not read (body or header too large, malformed HTTP).
gateway_reply read_error_reply(boost::beast::error_code ec, std::uint64_t max_body_bytes);

/// The OpenAI API's error body ({"error": {"message", "type", "param", "code"}}) with its
/// status: the answers of /v1/completions and /v1/models.
gateway_reply api_error_reply(http::status code, std::string_view what, std::string_view param = {},
                              std::string_view error_code = {});

/// {"error": "..."} with its status; `what` may hold any bytes (they are escaped).
gateway_reply error_reply(http::status code, std::string_view what);

/// The answers to the cluster's replies.
gateway_reply infer_reply(const actors::infer_result& r);
gateway_reply health_reply(const actors::cluster_status& st);
gateway_reply topology_reply(const actors::cluster_status& st);
gateway_reply epoch_reply(std::uint64_t epoch);
gateway_reply mesh_error_reply(const caf::error& err);

/// The metrics' outcome label of an error: "deadline_exceeded", "node_lost", ...
std::string outcome_of(const caf::error& err);

/// The response written for a reply (Server, Content-Type, keep-alive, the length).
http_response to_response(gateway_reply r, unsigned version, bool keep_alive);

} // namespace eoe::net
