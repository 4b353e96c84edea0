#include "net/gateway_routes.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/secret.hpp"
#include "experts/base/utf8.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>

#include <caf/sec.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <stdexcept>

namespace eoe::net {

namespace {

using nlohmann::json;

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

/// JSON text that is valid UTF-8 whatever the strings hold: a string that is not would make
/// nlohmann's dump throw (type_error 316); `replace` writes U+FFFD for its bad bytes instead.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

gateway_reply json_reply(http::status code, const json& j) {
  return {code, "application/json", dump(j), {}, {}};
}

/// 405 with Allow; `openai`: the OpenAI API's error body (the completions routes).
gateway_reply method_not_allowed(const http_request& req, const char* allow, bool openai = false) {
  const auto what = experts::quote_input(sv(req.method_string())) + " is not allowed here; use " + allow;
  auto r = openai ? api_error_reply(http::status::method_not_allowed, what)
                  : error_reply(http::status::method_not_allowed, what);
  r.headers.emplace_back(http::field::allow, allow);
  return r;
}

/// nullopt when the request carries the admin token, else the refusal.
std::optional<gateway_reply> refuse_admin(const http_request& req, const route_settings& s) {
  if (s.admin_token.empty())
    return error_reply(http::status::forbidden,
                       "no admin token is configured on this gateway; membership changes are off");
  const auto field = req[http::field::authorization];
  const std::string_view auth{field.data(), field.size()};
  constexpr std::string_view bearer = "Bearer ";
  if (auth.starts_with(bearer) && actors::secrets_match(auth.substr(bearer.size()), s.admin_token))
    return std::nullopt;
  auto r = error_reply(http::status::unauthorized,
                       "an admin call needs \"Authorization: Bearer <token>\" with the gateway's "
                       "admin token");
  r.headers.emplace_back(http::field::www_authenticate, "Bearer");
  return r;
}

gateway_action add_expert(const http_request& req) {
  add_expert_call call;
  try {
    check_json_text(req.body());
    json j;
    try {
      j = json::parse(req.body());
    } catch (const json::exception& e) {
      throw std::invalid_argument("the body is not JSON: " + experts::quote_input(e.what(), 240));
    }
    if (!j.is_object())
      throw std::invalid_argument(std::string("the body must be a JSON object, not ") + j.type_name());
    for (auto& [k, v] : j.items())
      if (k != "layer" && k != "node" && k != "init")
        throw std::invalid_argument("unknown field \"" + experts::quote_input(k) + "\" (known: layer, node, init)");
    if (!j.contains("layer") || !j["layer"].is_number_unsigned() || j["layer"].get<std::uint64_t>() > 1u << 20)
      throw std::invalid_argument("\"layer\" must be a small unsigned integer");
    if (!j.contains("node") || !j["node"].is_string())
      throw std::invalid_argument("\"node\" must be the name of a node (a string)");
    if (j.contains("init") && !j["init"].is_string())
      throw std::invalid_argument("\"init\" must be zero, clone:L.E or checkpoint:FILE[:L.E]");
    call.layer = j["layer"].get<std::uint32_t>();
    call.node = j["node"].get<std::string>();
    if (j.contains("init"))
      call.init = j["init"].get<std::string>();
  } catch (const std::invalid_argument& e) {
    return error_reply(http::status::bad_request, e.what());
  }
  return call;
}

gateway_action remove_expert(std::string_view which) {
  unsigned layer = 0, id = 0;
  char tail = 0;
  const std::string text{which};
  if (which.find_first_not_of("0123456789.") != std::string_view::npos
      || std::sscanf(text.c_str(), "%u.%u%c", &layer, &id, &tail) != 2)
    return error_reply(http::status::bad_request,
                       "\"" + experts::quote_input(which) + "\" does not name an expert as LAYER.ID, e.g. /v1/experts/1.3");
  return remove_expert_call{static_cast<std::uint32_t>(layer), static_cast<std::uint32_t>(id)};
}

/// The HTTP status for a mesh or CAF error.
http::status status_of(const caf::error& err) {
  if (err.category() == actors::mesh_category) {
    switch (static_cast<actors::mesh_errc>(err.code())) {
      case actors::mesh_errc::bad_request: return http::status::bad_request;
      case actors::mesh_errc::deadline_exceeded: return http::status::gateway_timeout;
      case actors::mesh_errc::not_ready:
      case actors::mesh_errc::node_lost: return http::status::service_unavailable;
      case actors::mesh_errc::internal: return http::status::internal_server_error;
      case actors::mesh_errc::unauthorized: return http::status::forbidden;
      case actors::mesh_errc::link_failed: return http::status::bad_gateway;
    }
  }
  if (err == caf::sec::request_timeout)
    return http::status::gateway_timeout;
  return http::status::bad_gateway;
}

} // namespace

gateway_action route(const http_request& req, const route_settings& s) {
  const std::string_view target{req.target().data(), req.target().size()};
  if (const auto f = experts::find_invalid_utf8(target))
    return error_reply(http::status::bad_request, experts::describe("request target", *f));
  std::string_view path = target.substr(0, target.find('?'));
  const auto method = req.method();
  if (path == "/v1/infer") {
    if (method != http::verb::post)
      return method_not_allowed(req, "POST");
    try {
      return infer_call{parse_infer_body(req.body(), s.infer)};
    } catch (const std::invalid_argument& e) {
      auto r = error_reply(http::status::bad_request, e.what());
      r.outcome = "bad_request";
      return r;
    }
  }
  if (path == "/v1/completions") {
    if (method != http::verb::post)
      return method_not_allowed(req, "POST", true);
    if (!s.language_model)
      return api_error_reply(http::status::not_found,
                             "this cluster serves a classifier, not a language model: use "
                             "/v1/infer",
                             "", "model_not_found");
    try {
      return completion_call{parse_completion_body(req.body(), s.completions)};
    } catch (const api_error& e) {
      auto r = api_error_reply(e.status, e.what(), e.param, e.code);
      r.outcome = "bad_request";
      return r;
    }
  }
  if (path == "/v1/models") {
    if (method != http::verb::get)
      return method_not_allowed(req, "GET", true);
    return gateway_reply{http::status::ok, "application/json",
                         models_json(s.completions.model, s.created), {}, {}};
  }
  if (path == "/healthz")
    return method == http::verb::get ? gateway_action{health_call{}} : method_not_allowed(req, "GET");
  if (path == "/v1/topology")
    return method == http::verb::get ? gateway_action{topology_call{}} : method_not_allowed(req, "GET");
  if (path == "/metrics")
    return method == http::verb::get ? gateway_action{metrics_call{}} : method_not_allowed(req, "GET");
  if (path == "/v1/experts" || path.starts_with("/v1/experts/")) {
    const bool one = path != "/v1/experts";
    if (method != (one ? http::verb::delete_ : http::verb::post))
      return method_not_allowed(req, one ? "DELETE" : "POST");
    if (auto refused = refuse_admin(req, s))
      return std::move(*refused);
    return one ? remove_expert(path.substr(12)) : add_expert(req);
  }
  return error_reply(http::status::not_found,
                     "no such path: " + experts::quote_input(path)
                       + " (try /v1/infer, /v1/completions, /v1/models, /v1/topology, "
                         "/v1/experts, /metrics, /healthz)");
}

gateway_reply read_error_reply(boost::beast::error_code ec, std::uint64_t max_body_bytes) {
  if (ec == http::error::body_limit)
    return error_reply(http::status::payload_too_large,
                       "the body is larger than " + std::to_string(max_body_bytes) + " bytes");
  if (ec == http::error::header_limit)
    return error_reply(http::status::request_header_fields_too_large,
                       "the header is larger than 16384 bytes");
  return error_reply(http::status::bad_request, "malformed HTTP: " + ec.message());
}

gateway_reply api_error_reply(http::status code, std::string_view what, std::string_view param,
                              std::string_view error_code) {
  return {code, "application/json", api_error_json(code, what, param, error_code), {}, {}};
}

gateway_reply error_reply(http::status code, std::string_view what) {
  return json_reply(code, json{{"error", experts::escape_invalid_utf8(what)}});
}

gateway_reply infer_reply(const actors::infer_result& r) {
  return {http::status::ok, "application/json", infer_result_json(r) + "\n", {}, {}};
}

gateway_reply health_reply(const actors::cluster_status& st) {
  if (st.epoch > 0) {
    // Serving; a node lost is said (the cluster answers without it).
    std::string body = "ok\n";
    for (size_t i = 0; i < st.nodes.size() && i < st.lost.size(); ++i)
      if (!st.lost[i].empty())
        body += "degraded: node " + st.nodes[i] + " lost (" + st.lost[i] + ")\n";
    return {http::status::ok, "text/plain", experts::escape_invalid_utf8(body), {}, {}};
  }
  return error_reply(http::status::service_unavailable, "the cluster is still starting");
}

gateway_reply topology_reply(const actors::cluster_status& st) {
  json nodes = json::array();
  for (size_t i = 0; i < st.nodes.size(); ++i)
    nodes.push_back({{"name", st.nodes[i]},
                     {"address", i < st.addresses.size() ? st.addresses[i] : ""},
                     {"alive", i < st.alive.size() && st.alive[i]},
                     {"lost", i < st.lost.size() ? st.lost[i] : ""},
                     {"experts", i < st.experts_per_node.size() ? st.experts_per_node[i] : 0},
                     {"kv_positions",
                      i < st.serving.kv_positions.size() ? st.serving.kv_positions[i] : 0}});
  return json_reply(http::status::ok,
                    {{"epoch", st.epoch},
                     {"model", st.model},
                     {"checkpoint", st.checkpoint},
                     {"registry", st.registry},
                     {"nodes", nodes},
                     {"experts", st.experts},
                     {"live_epochs", st.live_epochs},
                     {"requests_served", st.requests_served},
                     {"requests_failed", st.requests_failed},
                     {"in_flight", st.in_flight},
                     {"batches", st.batches},
                     {"serving",
                      {{"steps", st.serving.steps},
                       {"step_tokens", st.serving.step_tokens},
                       {"max_step", st.serving.max_step},
                       {"sessions", st.serving.sessions},
                       {"waiting", st.serving.waiting},
                       {"running", st.serving.running}}}});
}

gateway_reply epoch_reply(std::uint64_t epoch) {
  return json_reply(http::status::ok, {{"epoch", epoch}});
}

gateway_reply mesh_error_reply(const caf::error& err) {
  return error_reply(status_of(err), actors::describe(err));
}

std::string outcome_of(const caf::error& err) {
  if (err.category() == actors::mesh_category) {
    switch (static_cast<actors::mesh_errc>(err.code())) {
      case actors::mesh_errc::bad_request: return "bad_request";
      case actors::mesh_errc::deadline_exceeded: return "deadline_exceeded";
      case actors::mesh_errc::not_ready: return "not_ready";
      case actors::mesh_errc::node_lost: return "node_lost";
      case actors::mesh_errc::internal: return "internal";
      case actors::mesh_errc::unauthorized: return "unauthorized";
      case actors::mesh_errc::link_failed: return "link_failed";
    }
  }
  return err == caf::sec::request_timeout ? "deadline_exceeded" : "error";
}

http_response to_response(gateway_reply r, unsigned version, bool keep_alive) {
  http_response res{r.status, version};
  res.set(http::field::server, "eoe");
  res.set(http::field::content_type, r.content_type);
  for (auto& [field, value] : r.headers)
    res.set(field, value);
  res.keep_alive(keep_alive);
  res.body() = std::move(r.body);
  res.prepare_payload();
  return res;
}

} // namespace eoe::net
