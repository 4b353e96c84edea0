#include "net/etcd_client.hpp"

#include "net/infer_json.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace eoe::net {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using experts::errc;
using experts::fail;

/// etcd writes int64 fields as strings; a field left out is 0 (proto3's default).
std::int64_t int64_of(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end())
    return 0;
  if (it->is_string())
    return std::stoll(it->get<std::string>());
  return it->get<std::int64_t>();
}

etcd_value value_of(const json& kv) {
  etcd_value v;
  v.value = decode_base64(kv.value("value", std::string{}));
  v.create_revision = int64_of(kv, "create_revision");
  v.mod_revision = int64_of(kv, "mod_revision");
  v.lease = int64_of(kv, "lease");
  return v;
}

/// The end of the range of keys that start with prefix: prefix with its last byte plus one.
std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = prefix.back();
    if (static_cast<unsigned char>(last) < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0'); // every key
}

} // namespace

experts::expected<etcd_client> etcd_client::parse(const std::string& endpoint,
                                                  std::chrono::milliseconds timeout) {
  std::string rest = endpoint;
  if (rest.starts_with("etcd://"))
    rest = rest.substr(7);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()
      || rest.find_first_not_of("0123456789", colon + 1) != std::string::npos)
    return fail(errc::data_invalid,
                "registry \"" + endpoint + "\": expected etcd://HOST:PORT");
  return etcd_client{rest.substr(0, colon), rest.substr(colon + 1), timeout};
}

experts::expected<std::string> etcd_client::call(const std::string& path,
                                                 const std::string& body) const {
  asio::io_context io;
  tcp::resolver resolver{io};
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, host_port_);
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::response<http::string_body> res;
  beast::error_code failure;
  bool done = false;
  stream.expires_after(timeout_);
  resolver.async_resolve(host_, port_, [&](beast::error_code ec, tcp::resolver::results_type r) {
    if (ec) {
      failure = ec;
      return;
    }
    stream.async_connect(r, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        failure = ec;
        return;
      }
      http::async_write(stream, req, [&](beast::error_code ec, size_t) {
        if (ec) {
          failure = ec;
          return;
        }
        http::async_read(stream, buffer, res, [&](beast::error_code ec, size_t) {
          failure = ec;
          done = !ec;
        });
      });
    });
  });
  io.run_for(timeout_ + std::chrono::milliseconds(100));
  const auto where = "etcd at " + host_port_ + path;
  if (!done)
    return fail(errc::io, where + ": " + (failure ? failure.message() : "no answer within "
                                            + std::to_string(timeout_.count()) + " ms"));
  if (res.result() != http::status::ok) {
    std::string why = res.body();
    try {
      auto j = json::parse(res.body());
      why = j.value("message", j.value("error", why));
    } catch (const json::exception&) {
    }
    return fail(errc::io, where + ": HTTP " + std::to_string(res.result_int()) + ": " + why);
  }
  return res.body();
}

namespace {

/// Parses an etcd reply, or an error naming the endpoint.
experts::expected<json> parse_reply(const experts::expected<std::string>& text,
                                    const std::string& where) {
  if (!text)
    return fail(text.error().code, text.error().message);
  try {
    return json::parse(*text);
  } catch (const json::exception& e) {
    return fail(errc::data_invalid, where + ": the reply is not JSON: " + e.what());
  }
}

} // namespace

experts::expected<std::optional<etcd_value>> etcd_client::get(const std::string& key) const {
  auto j = parse_reply(call("/v3/kv/range", json{{"key", encode_base64(key)}}.dump()),
                       "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  try {
    auto kvs = j->find("kvs");
    if (kvs == j->end() || kvs->empty())
      return std::optional<etcd_value>{};
    return std::optional<etcd_value>{value_of(kvs->front())};
  } catch (const std::exception& e) {
    return fail(errc::data_invalid, "etcd at " + host_port_ + ": range of a key: " + e.what());
  }
}

experts::expected<std::vector<std::pair<std::string, etcd_value>>>
etcd_client::get_prefix(const std::string& prefix) const {
  auto j = parse_reply(call("/v3/kv/range", json{{"key", encode_base64(prefix)},
                                                 {"range_end", encode_base64(prefix_end(prefix))}}
                                              .dump()),
                       "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  std::vector<std::pair<std::string, etcd_value>> out;
  try {
    if (auto kvs = j->find("kvs"); kvs != j->end())
      for (auto& kv : *kvs)
        out.emplace_back(decode_base64(kv.value("key", std::string{})), value_of(kv));
  } catch (const std::exception& e) {
    return fail(errc::data_invalid, "etcd at " + host_port_ + ": range of a prefix: " + e.what());
  }
  return out;
}

experts::expected<void> etcd_client::put(const std::string& key, const std::string& value,
                                         std::int64_t lease) const {
  json body{{"key", encode_base64(key)}, {"value", encode_base64(value)}};
  if (lease)
    body["lease"] = std::to_string(lease);
  auto j = parse_reply(call("/v3/kv/put", body.dump()), "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  return {};
}

experts::expected<bool> etcd_client::put_if(const std::string& guard, const std::string& guard_value,
                                            const std::string& key, const std::string& value) const {
  const json body{
    {"compare", json::array({{{"target", "VALUE"},
                              {"key", encode_base64(guard)},
                              {"result", "EQUAL"},
                              {"value", encode_base64(guard_value)}}})},
    {"success", json::array({{{"requestPut", {{"key", encode_base64(key)},
                                              {"value", encode_base64(value)}}}}})}};
  auto j = parse_reply(call("/v3/kv/txn", body.dump()), "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  return j->value("succeeded", false);
}

experts::expected<void> etcd_client::erase_prefix(const std::string& prefix) const {
  auto j = parse_reply(call("/v3/kv/deleterange",
                            json{{"key", encode_base64(prefix)},
                                 {"range_end", encode_base64(prefix_end(prefix))}}
                              .dump()),
                       "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  return {};
}

experts::expected<std::int64_t> etcd_client::grant(std::int64_t ttl_s) const {
  auto j = parse_reply(call("/v3/lease/grant", json{{"TTL", ttl_s}}.dump()), "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  try {
    return int64_of(*j, "ID");
  } catch (const std::exception& e) {
    return fail(errc::data_invalid, "etcd at " + host_port_ + ": lease grant: " + e.what());
  }
}

experts::expected<std::int64_t> etcd_client::keep_alive(std::int64_t lease) const {
  auto j = parse_reply(call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump()),
                       "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  try {
    auto r = j->find("result");
    return r == j->end() ? 0 : int64_of(*r, "TTL");
  } catch (const std::exception& e) {
    return fail(errc::data_invalid, "etcd at " + host_port_ + ": lease keepalive: " + e.what());
  }
}

experts::expected<void> etcd_client::revoke(std::int64_t lease) const {
  auto j = parse_reply(call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump()),
                       "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  return {};
}

experts::expected<etcd_campaign> etcd_client::campaign(const std::string& key,
                                                       const std::string& value,
                                                       std::int64_t lease) const {
  const auto k = encode_base64(key);
  const json body{
    {"compare", json::array({{{"target", "CREATE"}, {"key", k}, {"createRevision", "0"}}})},
    {"success", json::array({{{"requestPut", {{"key", k},
                                              {"value", encode_base64(value)},
                                              {"lease", std::to_string(lease)}}}}})},
    {"failure", json::array({{{"requestRange", {{"key", k}}}}})}};
  auto j = parse_reply(call("/v3/kv/txn", body.dump()), "etcd at " + host_port_);
  if (!j)
    return fail(j.error().code, j.error().message);
  etcd_campaign out;
  out.won = j->value("succeeded", false);
  // Read the key back either way: the winner's create_revision is its term.
  auto now = get(key);
  if (!now)
    return fail(now.error().code, now.error().message);
  if (!*now) // expired between the two calls: nobody holds it
    return etcd_campaign{};
  out.leader = **now;
  if (out.won && out.leader.lease != lease)
    out.won = false;
  return out;
}

} // namespace eoe::net
