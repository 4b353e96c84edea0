// The HTTP gateway in front of a 3-node cluster (in one process): answers equal the reference
// forward (JSON rows and base64 float32 alike); every malformed request in the table below gets
// its 4xx and an error naming what is wrong, and the server keeps serving; admin calls need the
// token; past the concurrency limit requests wait in a bounded queue, and past the queue get
// 429 with Retry-After at once; /healthz, /v1/topology and /metrics say
// what they should.

#include "http_client.hpp"
#include "local_cluster_fixture.hpp"
#include "mesh_model.hpp"
#include "net/http_gateway.hpp"
#include "net/infer_json.hpp"
#include "experts/base/rng.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <future>
#include <iostream>
#include <sstream>
#include <thread>

using namespace eoe;
using namespace eoe::actors;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr const char* token = "s3cret-admin-token";

using reply = test::http_reply;

reply raw(std::uint16_t port, const std::string& bytes) {
  return test::raw_http(port, bytes);
}

reply call(std::uint16_t port, const std::string& method, const std::string& target,
           const std::string& body = "", const std::string& extra_headers = "") {
  return test::call_http(port, method, target, body, extra_headers);
}

std::string rows_json(const matrix& x) {
  json rows = json::array();
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    json row = json::array();
    for (Eigen::Index c = 0; c < x.cols(); ++c)
      row.push_back(x(i, c));
    rows.push_back(row);
  }
  return rows.dump();
}

/// The output rows of an answer against the reference forward.
double output_diff(const std::string& body, const experts::model& m, const matrix& x) {
  const auto j = json::parse(body);
  auto be = kernels::make_cpu_backend();
  auto want = experts::forward(*be, m, x);
  REQUIRE(want.has_value());
  const auto& out = j.at("output");
  REQUIRE(out.size() == static_cast<size_t>(want->output.rows()));
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    REQUIRE(out[i].size() == static_cast<size_t>(want->output.cols()));
    for (size_t c = 0; c < out[i].size(); ++c)
      worst = std::max(worst, std::abs(out[i][c].get<double>()
                                       - want->output(static_cast<Eigen::Index>(i),
                                                      static_cast<Eigen::Index>(c))));
  }
  // The activations are the reference's too.
  const auto& layers = j.at("layers");
  REQUIRE(layers.size() == want->layers.size());
  for (size_t l = 0; l < layers.size(); ++l)
    for (size_t t = 0; t < layers[l].at("tokens").size(); ++t) {
      const auto e = want->layers[l].active.experts_of(t);
      CHECK(layers[l]["tokens"][t]["experts"].get<std::vector<std::int32_t>>()
            == std::vector<std::int32_t>(e.begin(), e.end()));
    }
  return worst;
}

} // namespace

TEST_CASE("the HTTP gateway: answers, every bad input named, admin, limits, metrics",
          "[gateway]") {
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  test::local_cluster cluster{test::checkpoint(), 3};
  net::gateway_settings s;
  s.admin_token = token;
  s.max_concurrency = 4;
  s.max_queue = 1;
  s.max_body_bytes = 64 * 1024;
  s.max_tokens = 64;
  s.deadline_ms = 10000;
  net::http_gateway gw{cluster.sys, cluster.coordinator, m->config, s};
  const auto port = gw.port();
  const int width = m->config.input_dim;

  const auto x = test::random_input(3, width, 5);
  SECTION("answers equal the reference, as JSON rows and as base64 float32, on one connection") {
    auto ok = call(port, "POST", "/v1/infer", R"({"tokens": )" + rows_json(x) + "}");
    REQUIRE(ok.status == 200);
    CHECK(output_diff(ok.body, *m, x) <= 1e-6);
    const std::string bytes(reinterpret_cast<const char*>(x.data()), static_cast<size_t>(x.size()) * 4);
    const std::string b64 = R"({"tokens_b64": ")" + net::encode_base64(bytes) + R"(", "rows": 3})";
    // Two requests on one keep-alive connection.
    const std::string one = "POST /v1/infer HTTP/1.1\r\nHost: t\r\nContent-Length: "
                            + std::to_string(b64.size()) + "\r\n\r\n" + b64;
    asio::io_context io;
    tcp::socket sock{io};
    sock.connect({asio::ip::make_address("127.0.0.1"), port});
    beast::flat_buffer buf;
    for (int i = 0; i < 2; ++i) {
      asio::write(sock, asio::buffer(one));
      http::response<http::string_body> res;
      http::read(sock, buf, res);
      REQUIRE(res.result_int() == 200);
      CHECK(res.keep_alive());
      CHECK(output_diff(res.body(), *m, x) <= 1e-6);
    }
  }

  SECTION("every malformed request gets its 4xx naming what is wrong; serving goes on") {
    const auto row = [&](int n, const std::string& v = "0.5") {
      std::string r = "[";
      for (int i = 0; i < n; ++i)
        r += (i ? "," : "") + v;
      return r + "]";
    };
    const auto good_row = row(width);
    const std::string twelve_zero_b64 = net::encode_base64(std::string(size_t(width) * 4, '\0'));
    std::string nan_bytes(size_t(width) * 4, '\0');
    const float nan = std::nanf("");
    std::memcpy(nan_bytes.data() + 8, &nan, 4);
    struct bad_case {
      std::string what, method, target, body, headers;
      unsigned status;
      std::string error; ///< a part of the error text
    };
    const std::vector<bad_case> cases{
      {"unknown path", "GET", "/nope", "", "", 404, "no such path: /nope"},
      {"GET on /v1/infer", "GET", "/v1/infer", "", "", 405, "GET is not allowed here; use POST"},
      {"POST on /healthz", "POST", "/healthz", "", "", 405, "use GET"},
      {"PUT on /v1/experts", "PUT", "/v1/experts", "{}", "", 405, "use POST"},
      {"body not JSON", "POST", "/v1/infer", "{tokens:", "", 400, "the body is not JSON"},
      {"body a JSON array", "POST", "/v1/infer", "[1,2]", "", 400, "must be a JSON object, not array"},
      {"unknown field", "POST", "/v1/infer", R"({"tokens":[)" + good_row + R"(],"foo":1})", "", 400,
       "unknown field \"foo\""},
      {"no tokens at all", "POST", "/v1/infer", "{}", "", 400, "give exactly one of"},
      {"tokens and tokens_b64", "POST", "/v1/infer",
       R"({"tokens":[)" + good_row + R"(],"tokens_b64":"AAAA","rows":1})", "", 400, "give exactly one of"},
      {"tokens empty", "POST", "/v1/infer", R"({"tokens":[]})", "", 400, "non-empty array of rows"},
      {"tokens a number", "POST", "/v1/infer", R"({"tokens":7})", "", 400, "non-empty array of rows"},
      {"a row of the wrong width", "POST", "/v1/infer",
       R"({"tokens":[)" + good_row + "," + row(3) + "]}", "", 400,
       "tokens[1] must be an array of 12 numbers (the model's input width), it has 3"},
      {"a row that is not an array", "POST", "/v1/infer", R"({"tokens":[5]})", "", 400,
       "tokens[0] must be an array of 12 numbers"},
      {"a value that is a string", "POST", "/v1/infer",
       R"({"tokens":[[0,0,"x",0,0,0,0,0,0,0,0,0]]})", "", 400, "tokens[0][2] is not a number: \"x\""},
      {"a value past float32", "POST", "/v1/infer", R"({"tokens":[)" + row(width, "1e39") + "]}", "",
       400, "tokens[0][0] is not a finite float32"},
      {"too many tokens", "POST", "/v1/infer",
       R"({"tokens":[)" + [&] {
         std::string r;
         for (int i = 0; i < 65; ++i)
           r += (i ? "," : "") + good_row;
         return r;
       }() + "]}",
       "", 400, "\"tokens\" has 65 rows, at most 64 are accepted"},
      {"tokens_b64 not a string", "POST", "/v1/infer", R"({"tokens_b64":5,"rows":1})", "", 400,
       "\"tokens_b64\" must be a base64 string"},
      {"tokens_b64 without rows", "POST", "/v1/infer", R"({"tokens_b64":"AAAA"})", "", 400,
       "needs \"rows\", a positive integer"},
      {"rows 0", "POST", "/v1/infer", R"({"tokens_b64":"AAAA","rows":0})", "", 400,
       "\"rows\" must be in 1..64, got 0"},
      {"a character that is not base64", "POST", "/v1/infer", R"({"tokens_b64":"AAA!","rows":1})", "",
       400, "character 3 ('!') is not base64"},
      {"base64 of a length not a multiple of 4", "POST", "/v1/infer",
       R"({"tokens_b64":"AAAAA","rows":1})", "", 400, "a multiple of 4 is needed"},
      {"base64 of the wrong size", "POST", "/v1/infer", R"({"tokens_b64":")" + twelve_zero_b64 + R"(","rows":2})",
       "", 400, "holds 48 bytes; 2 rows of 12 float32 need 96"},
      {"a NaN in base64", "POST", "/v1/infer",
       R"({"tokens_b64":")" + net::encode_base64(nan_bytes) + R"(","rows":1})", "", 400,
       "value 2 (row 0) is not finite"},
      {"ids of the wrong count", "POST", "/v1/infer", R"({"tokens":[)" + good_row + R"(],"ids":[1,2]})",
       "", 400, "\"ids\" must be an array of 1 unsigned integers"},
      {"a negative id", "POST", "/v1/infer", R"({"tokens":[)" + good_row + R"(],"ids":[-1]})", "", 400,
       "ids[0] is not an unsigned integer: -1"},
      {"deadline 0", "POST", "/v1/infer", R"({"tokens":[)" + good_row + R"(],"deadline_ms":0})", "",
       400, "\"deadline_ms\" must be an integer in 1..3600000, got 0"},
      {"trace not a bool", "POST", "/v1/infer", R"({"tokens":[)" + good_row + R"(],"trace":"yes"})", "",
       400, "\"trace\" must be true or false, got \"yes\""},
      {"a body over the limit", "POST", "/v1/infer", std::string(70 * 1024, ' '), "", 413,
       "the body is larger than 65536 bytes"},
      {"a header over the limit", "GET", "/healthz", "", "X-Big: " + std::string(20000, 'a') + "\r\n",
       431, "the header is larger than 16384 bytes"},
      {"admin call without a token", "POST", "/v1/experts", R"({"layer":2,"node":"n1"})", "", 401,
       "needs \"Authorization: Bearer <token>\""},
      {"admin call with a wrong token", "POST", "/v1/experts", R"({"layer":2,"node":"n1"})",
       "Authorization: Bearer wrong\r\n", 401, "the gateway's admin token"},
      {"admin delete without a token", "DELETE", "/v1/experts/2.0", "", "", 401, "Authorization"},
      {"add-expert with an unknown field", "POST", "/v1/experts", R"({"layer":2,"node":"n1","x":1})",
       std::string("Authorization: Bearer ") + token + "\r\n", 400, "unknown field \"x\""},
      {"add-expert to a node that does not exist", "POST", "/v1/experts",
       R"({"layer":2,"node":"n9","init":"zero"})", std::string("Authorization: Bearer ") + token + "\r\n",
       400, "no live node 'n9'"},
      {"add-expert to a layer that does not exist", "POST", "/v1/experts",
       R"({"layer":99,"node":"n1","init":"zero"})", std::string("Authorization: Bearer ") + token + "\r\n",
       400, "add expert: the model has no layer 99"},
      {"delete of something that is not LAYER.ID", "DELETE", "/v1/experts/abc", "",
       std::string("Authorization: Bearer ") + token + "\r\n", 400, "does not name an expert as LAYER.ID"},
      {"delete of an expert that does not exist", "DELETE", "/v1/experts/0.99", "",
       std::string("Authorization: Bearer ") + token + "\r\n", 400, "remove expert: 0.99"},
    };
    CHECK(cases.size() >= 30);
    for (auto& c : cases) {
      INFO(c.what);
      const auto r = call(port, c.method, c.target, c.body, c.headers);
      CHECK(r.status == c.status);
      CHECK_THAT(r.error(), Catch::Contains(c.error));
      if (c.status == 405)
        CHECK(!r.allow.empty());
      if (c.status == 401)
        CHECK(r.www_authenticate == "Bearer");
      // The server keeps serving after each one.
      CHECK(call(port, "GET", "/healthz").status == 200);
    }
    // Malformed HTTP itself.
    const std::vector<std::pair<std::string, std::string>> broken{
      {"a request line that is not HTTP", "GARBAGE\r\n\r\n"},
      {"a header line without a colon", "GET /healthz HTTP/1.1\r\nHost t\r\n\r\n"},
      {"a Content-Length that is not a number", "POST /v1/infer HTTP/1.1\r\nContent-Length: abc\r\n\r\n"},
    };
    for (auto& [what, bytes] : broken) {
      INFO(what);
      const auto r = raw(port, bytes);
      CHECK(r.status == 400);
      CHECK_THAT(r.error(), Catch::Contains("malformed HTTP"));
    }
    // Nothing accepted was lost: a good request after all of it.
    const auto after = call(port, "POST", "/v1/infer", R"({"tokens": )" + rows_json(x) + "}");
    REQUIRE(after.status == 200);
    CHECK(output_diff(after.body, *m, x) <= 1e-6);
  }

  SECTION("bytes that are not UTF-8, on every endpoint, with and without the token: a 4xx JSON "
          "error naming the byte; the cluster goes on serving") {
    const std::string auth = std::string("Authorization: Bearer ") + token + "\r\n";
    const std::string good = R"({"tokens": )" + rows_json(x) + "}";
    const std::string ff = "\xff", fffe = "\xff\xfe";
    const std::string huge(60000, 'a');
    struct bad_case {
      std::string what, method, target, body, headers;
      unsigned status;
      std::string error; ///< a part of the error text
    };
    const std::vector<bad_case> cases{
      // /v1/infer: the issue's two requests first
      {"ff fe before the JSON", "POST", "/v1/infer", fffe + good, "", 400,
       "body byte 1: 0xFF is not UTF-8 (never appears in UTF-8)"},
      {"a key with a 0xff byte", "POST", "/v1/infer", R"({"tokens": [[1]], "k)" + ff + R"(": 1})", "",
       400, "body byte 21: 0xFF is not UTF-8"},
      {"a string value with 0xff", "POST", "/v1/infer", R"({"tokens": [["a)" + ff + R"("]]})", "", 400,
       "body byte 16: 0xFF is not UTF-8"},
      {"an overlong '/'", "POST", "/v1/infer", "{\"tokens\": \"\xc0\xaf\"}", "", 400,
       "body byte 13: 0xC0 is not UTF-8 (an overlong form"},
      {"a 3-byte overlong form", "POST", "/v1/infer", "{\"\xe0\x80\xaf\": 1}", "", 400,
       "body byte 3: 0xE0 is not UTF-8 (an overlong form)"},
      {"a surrogate encoded as bytes (CESU-8)", "POST", "/v1/infer", "{\"\xed\xa0\x80\": 1}", "", 400,
       "body byte 3: 0xED is not UTF-8 (a UTF-16 surrogate (U+D800..U+DFFF))"},
      {"a sequence the body ends inside", "POST", "/v1/infer", "{\"a\": \"\xe2\x82", "", 400,
       "body byte 8: 0xE2 is not UTF-8 (begins a multi-byte sequence that the text ends inside)"},
      {"a lone surrogate in a \\u escape", "POST", "/v1/infer", R"({"tokens": "\ud800"})", "", 400,
       "the body is not JSON"},
      {"a low surrogate first", "POST", "/v1/infer", R"({"k\udc00": 1})", "", 400, "the body is not JSON"},
      {"a NUL byte in the body", "POST", "/v1/infer", std::string("{\"tokens\"\0: 1}", 14), "", 400,
       "body byte 10: a NUL byte (JSON text has none; in a string it is written \\u0000)"},
      {"a NUL byte after the JSON (the parser would stop there)", "POST", "/v1/infer",
       good + std::string("\0junk", 5), "", 400, "body byte " + std::to_string(good.size() + 1) + ": a NUL byte"},
      {"add-expert, token, a NUL byte after the JSON", "POST", "/v1/experts",
       std::string("{\"layer\":2,\"node\":\"n1\"}\0", 24), auth, 400, "body byte 24: a NUL byte"},
      {"a NUL escaped in a key", "POST", "/v1/infer", R"({"a\u0000b": 1})", "", 400,
       "unknown field \"a\u0000b\""},
      {"a huge string value, quoted cut", "POST", "/v1/infer",
       R"({"tokens": [[")" + huge + R"(",0,0,0,0,0,0,0,0,0,0,0]]})", "", 400,
       "tokens[0][0] is not a number: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... (60002 bytes)"},
      {"a huge unknown key, quoted cut", "POST", "/v1/infer", R"({")" + huge + R"(": 1})", "", 400,
       "... (60000 bytes)\" (known:"},
      // the request target, on each path
      {"a path with 0xff", "GET", "/v1/infer" + ff, "", "", 400,
       "request target byte 10: 0xFF is not UTF-8"},
      {"/healthz with 0xff in its query", "GET", "/healthz?x=" + ff, "", "", 400,
       "request target byte 12: 0xFF"},
      {"/v1/topology with an overlong form", "GET", "/v1/topology\xc0\xaf", "", "", 400,
       "request target byte 13: 0xC0"},
      {"/metrics with a continuation byte", "GET", "/metrics\x80", "", "", 400, "request target byte 9: 0x80"},
      {"an unknown path that is not UTF-8", "GET", "/\xfe\xff", "", "", 400, "request target byte 2: 0xFE"},
      // admin calls, without the token and with it
      {"add-expert, no token, body 0xff", "POST", "/v1/experts", "{\"layer\":2,\"node\":\"n" + ff + "\"}",
       "", 401, "needs \"Authorization: Bearer <token>\""},
      {"add-expert, a token of 0xff bytes", "POST", "/v1/experts", R"({"layer":2,"node":"n1"})",
       "Authorization: Bearer " + fffe + "\r\n", 401, "the gateway's admin token"},
      {"add-expert, token, a node of 0xff", "POST", "/v1/experts",
       "{\"layer\":2,\"node\":\"n" + ff + "\"}", auth, 400, "body byte 21: 0xFF is not UTF-8"},
      {"add-expert, token, a key of 0xff", "POST", "/v1/experts", "{\"" + ff + "\":1}", auth, 400,
       "body byte 3: 0xFF"},
      {"add-expert, token, ff fe before the JSON", "POST", "/v1/experts", fffe + R"({"layer":2})", auth,
       400, "body byte 1: 0xFF"},
      {"add-expert, token, a lone surrogate", "POST", "/v1/experts", R"({"layer":2,"node":"\udbff"})",
       auth, 400, "the body is not JSON"},
      {"add-expert, token, a node that is not there (not ASCII)", "POST", "/v1/experts",
       R"({"layer":2,"node":"\u00fcber \ud83d\ude00"})", auth, 400, "no live node '\xc3\xbc" "ber \xf0\x9f\x98\x80'"},
      {"delete, no token, target 0xff", "DELETE", "/v1/experts/2." + ff, "", "", 400,
       "request target byte 15: 0xFF"},
      {"delete, token, target 0xff", "DELETE", "/v1/experts/2." + ff, "", auth, 400,
       "request target byte 15: 0xFF"},
      {"delete, token, a huge name", "DELETE", "/v1/experts/" + std::string(5000, '9'), "", auth, 400,
       "... (5000 bytes)\" does not name an expert as LAYER.ID"},
    };
    for (auto& c : cases) {
      INFO(c.what);
      const auto r = call(port, c.method, c.target, c.body, c.headers);
      CHECK(r.status == c.status);
      CHECK(r.content_type == "application/json");
      // The body is JSON, hence UTF-8 (nlohmann's parser checks), and short however long the input.
      CHECK(json::parse(r.body, nullptr, false).is_object());
      CHECK(r.body.size() < 600);
      CHECK_THAT(r.error(), Catch::Contains(c.error));
      CHECK(!r.request_id.empty());
      CHECK(call(port, "GET", "/healthz").status == 200);
    }
    // A header value that is not UTF-8 is no one's business but its reader's: served.
    const auto odd_header = call(port, "POST", "/v1/infer", good, "X-Note: " + fffe + "\r\n");
    CHECK(odd_header.status == 200);
    // Correct answers after all of it, on every endpoint.
    const auto after = call(port, "POST", "/v1/infer", good);
    REQUIRE(after.status == 200);
    CHECK(output_diff(after.body, *m, x) <= 1e-6);
    CHECK(json::parse(call(port, "GET", "/v1/topology").body).at("nodes").size() == 3);
    CHECK_THAT(call(port, "GET", "/metrics").body, Catch::Contains("eoe_http_responses_total{code=\"400\"}"));
  }

  SECTION("admin calls change the membership with the token") {
    const std::string auth = std::string("Authorization: Bearer ") + token + "\r\n";
    const auto add = call(port, "POST", "/v1/experts", R"({"layer":2,"node":"n2","init":"zero"})", auth);
    REQUIRE(add.status == 200);
    const auto e1 = json::parse(add.body).at("epoch").get<std::uint64_t>();
    CHECK(e1 >= 2);
    const auto topo = json::parse(call(port, "GET", "/v1/topology").body);
    CHECK(topo.at("epoch").get<std::uint64_t>() == e1);
    CHECK(topo.at("nodes").size() == 3);
    const auto experts = topo.at("experts").get<std::vector<std::string>>();
    CHECK(std::find(experts.begin(), experts.end(), "2.4@n2") != experts.end());
    const auto del = call(port, "DELETE", "/v1/experts/2.4", "", auth);
    REQUIRE(del.status == 200);
    CHECK(json::parse(del.body).at("epoch").get<std::uint64_t>() == e1 + 1);
  }

  SECTION("past the concurrency limit a request waits; past the queue, 429 at once; the "
          "requests in flight finish") {
    const auto mute = [&](bool on) {
      caf::scoped_actor self{cluster.sys};
      self->request(cluster.coordinator, std::chrono::seconds(5), mute_atom::value,
                    std::uint32_t{0}, std::uint32_t{0}, on)
        .receive([](ok_atom) {}, [&](const caf::error& e) { FAIL(describe(e)); });
    };
    // A silent expert holds every request until its deadline.
    mute(true);
    const std::string slow = R"({"tokens": )" + rows_json(x) + R"(, "deadline_ms": 1500})";
    std::vector<std::future<reply>> held;
    for (int i = 0; i < 4; ++i)
      held.push_back(std::async(std::launch::async, [&] { return call(port, "POST", "/v1/infer", slow); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto queued = std::async(std::launch::async, [&] { return call(port, "POST", "/v1/infer", slow); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK_THAT(call(port, "GET", "/metrics").body, Catch::Contains("eoe_gateway_waiting_requests 1"));
    const auto start = std::chrono::steady_clock::now();
    const auto refused = call(port, "POST", "/v1/infer", slow);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
    CHECK(refused.status == 429);
    CHECK(refused.retry_after == "1");
    CHECK_THAT(refused.error(), Catch::Contains("4 requests in flight and 1 waiting already"));
    for (auto& h : held) {
      const auto r = h.get();
      CHECK(r.status == 504);
      CHECK_THAT(r.error(), Catch::Contains("expert 0.0"));
    }
    // The one that waited ran when a slot freed (and met the same silent expert).
    const auto late = queued.get();
    CHECK(late.status == 504);
    CHECK_THAT(late.error(), Catch::Contains("expert 0.0"));
    mute(false);
    CHECK(call(port, "POST", "/v1/infer", R"({"tokens": )" + rows_json(x) + "}").status == 200);
    const auto metrics = call(port, "GET", "/metrics").body;
    CHECK_THAT(metrics, Catch::Contains("eoe_requests_total{outcome=\"overloaded\"} 1"));
    CHECK_THAT(metrics, Catch::Contains("eoe_requests_total{outcome=\"deadline_exceeded\"} 5"));
  }

  SECTION("/healthz, /metrics") {
    CHECK(call(port, "GET", "/healthz").body == "ok\n");
    REQUIRE(call(port, "POST", "/v1/infer", R"({"tokens": )" + rows_json(x) + "}").status == 200);
    (void) call(port, "POST", "/v1/infer", "nope");
    const auto metrics = call(port, "GET", "/metrics");
    CHECK(metrics.status == 200);
    const auto& t = metrics.body;
    CHECK_THAT(t, Catch::Contains("# TYPE eoe_requests_total counter"));
    CHECK_THAT(t, Catch::Contains("eoe_requests_total{outcome=\"ok\"} 1"));
    CHECK_THAT(t, Catch::Contains("eoe_requests_total{outcome=\"bad_request\"} 1"));
    CHECK_THAT(t, Catch::Contains("eoe_request_seconds_bucket{le=\"+Inf\"} 2"));
    CHECK_THAT(t, Catch::Contains("eoe_expert_activations_total{layer=\"0\",expert=\""));
    CHECK_THAT(t, Catch::Contains("eoe_http_responses_total{code=\"400\"} 1"));
    CHECK_THAT(t, Catch::Contains("eoe_relay_messages_total{node=\"n2\",kind=\"remote\"}"));
    CHECK_THAT(t, Catch::Contains("eoe_requests_in_flight 0"));
  }
}

TEST_CASE("an answer the gateway cannot make is a 500 naming the request, logged with its "
          "number; the gateway goes on",
          "[gateway]") {
  // A coordinator whose inference answers are malformed (bytes that do not fill the output's
  // shape): writing them is where the gateway fails, a bug of ours as far as a client can tell.
  mesh_config cfg;
  caf::actor_system sys{cfg};
  std::atomic<bool> malformed{true};
  auto fake = sys.spawn([&malformed](coordinator_actor::pointer) -> coordinator_actor::behavior_type {
    return {
      [&malformed](infer_atom, infer_request& r) {
        infer_result res;
        res.request = 1;
        res.epoch = 1;
        res.output = r.tokens;
        if (malformed)
          res.output.bytes.resize(5);
        return res;
      },
      [](status_atom) {
        cluster_status st;
        st.epoch = 1;
        return st;
      },
      [](add_expert_atom, std::uint32_t, std::string, std::string) { return std::uint64_t{0}; },
      [](remove_expert_atom, std::uint32_t, std::uint32_t) { return std::uint64_t{0}; },
      [](drain_atom, std::string) { return std::uint64_t{0}; },
      [](join_atom, std::string, std::string, node_agent_actor, std::string) { return ok_atom::value; },
      [](model_atom, std::uint64_t) { return std::string{}; },
      [](context_atom) { return context_actor{}; },
      [](session_atom) { return std::uint64_t{0}; },
      [](drop_atom, std::uint64_t) { return ok_atom::value; },
      [](mute_atom, std::uint32_t, std::uint32_t, bool) { return ok_atom::value; },
      [](stats_atom) { return std::vector<relay_stats>{}; },
      [](heartbeat_atom) {},
      [](shutdown_atom) {},
    };
  });
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  const auto x = test::random_input(2, m->config.input_dim, 9);
  const std::string body = R"({"tokens": )" + rows_json(x) + "}";
  std::ostringstream log;
  auto* old = std::cerr.rdbuf(log.rdbuf());
  reply bad, good;
  {
    net::http_gateway gw{sys, fake, m->config, net::gateway_settings{}};
    bad = call(gw.port(), "POST", "/v1/infer", body);
    malformed = false;
    good = call(gw.port(), "POST", "/v1/infer", body);
  } // the gateway's thread has ended: its log is complete
  std::cerr.rdbuf(old);
  caf::anon_send_exit(fake, caf::exit_reason::user_shutdown);
  CHECK(bad.status == 500);
  REQUIRE(!bad.request_id.empty());
  CHECK_THAT(bad.error(), Catch::StartsWith("internal error while answering request " + bad.request_id + ": "));
  CHECK_THAT(bad.error(), Catch::Contains("(the gateway's log has it)"));
  CHECK_THAT(log.str(), Catch::StartsWith("gateway: request " + bad.request_id
                                          + " (POST /v1/infer): internal error: "));
  // The next request on the same gateway is answered, right.
  REQUIRE(good.status == 200);
  CHECK(std::stoull(good.request_id) == std::stoull(bad.request_id) + 1);
  const auto out = json::parse(good.body).at("output");
  CHECK(out.size() == 2);
  CHECK(std::abs(out[1][3].get<double>() - x(1, 3)) <= 1e-6);
}

TEST_CASE("base64 decodes what encode_base64 wrote, every length and byte; bad digits named",
          "[gateway]") {
  experts::rng r{7};
  for (size_t n = 0; n <= 64; ++n) {
    std::string bytes(n, '\0');
    for (auto& b : bytes)
      b = static_cast<char>(r.next() & 0xff);
    CHECK(net::decode_base64(net::encode_base64(bytes)) == bytes);
  }
  std::string all(256, '\0');
  for (int i = 0; i < 256; ++i)
    all[static_cast<size_t>(i)] = static_cast<char>(i);
  CHECK(net::decode_base64(net::encode_base64(all)) == all);
  CHECK(net::decode_base64("TWFu") == "Man");
  CHECK(net::decode_base64("TWE=") == "Ma");
  CHECK(net::decode_base64("TQ==") == "M");
  const auto error_of = [](std::string_view text) {
    try {
      net::decode_base64(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("TWFuTW!u") == "base64: character 6 ('!') is not base64");
  CHECK(error_of("TW=uTWFu") == "base64: character 2 ('=') is not base64");
  CHECK(error_of("T===") == "base64: character 1 ('=') is not base64");
  CHECK(error_of("TWF\x80") == "base64: character 3 (byte 0x80) is not base64");
  CHECK(error_of("TWF") == "base64 of 3 characters (a multiple of 4 is needed)");
}

TEST_CASE("an infer body's tokens_b64 read in place gives what parsing the whole body gives",
          "[gateway]") {
  // parse_infer_body reads a plain "tokens_b64" string where it lies and parses the rest; an
  // escaped one ("\u0041" is 'A'), one inside another object, or one given twice take the whole
  // parse. Every spelling of the same request must give the same request, and every error the
  // same message.
  const net::infer_body_limits limits{2, 16, 5000};
  const float values[4] = {1.5f, -2.0f, 0.25f, 1e-3f};
  const auto b64 = net::encode_base64({reinterpret_cast<const char*>(values), sizeof values});
  char first[8];
  std::snprintf(first, sizeof first, "\\u%04x", static_cast<unsigned>(b64[0]));
  const auto escaped = first + b64.substr(1); // its first digit spelled \u00XX
  const auto expect_same = [&](const std::string& body) {
    INFO(body);
    const auto r = net::parse_infer_body(body, limits);
    CHECK(r.tokens.rows == 2);
    CHECK(r.tokens.cols == 2);
    CHECK(r.tokens.bytes == std::string(reinterpret_cast<const char*>(values), sizeof values));
    CHECK(r.deadline_ms == 77);
  };
  expect_same(R"({"tokens_b64":")" + b64 + R"(","rows":2,"deadline_ms":77})");
  expect_same(R"( { "deadline_ms" : 77 , "tokens_b64"  :	")" + b64 + R"(" , "rows" : 2 } )");
  expect_same(R"({"deadline_ms":77,"rows":2,"tokens_b64":")" + escaped + R"("})");
  expect_same(R"({"rows":2,"deadline_ms":77,"trace":false,"tokens_b64":")" + b64 + R"("})");
  const auto error_of = [&](const std::string& body) {
    try {
      net::parse_infer_body(body, limits);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // The key inside another object is not the request's field.
  CHECK(error_of(R"({"ids":{"tokens_b64":")" + b64 + R"("},"rows":2})")
        == R"(give exactly one of "tokens" (rows of numbers) and "tokens_b64" (base64 float32))");
  // An error in the text read in place is said as the whole parse says it.
  CHECK(error_of(R"({"tokens_b64":"AAA!","rows":1})")
        == R"("tokens_b64": base64: character 3 ('!') is not base64)");
  const auto tab = error_of("{\"tokens_b64\":\"AA\tA\",\"rows\":1}");
  CHECK(tab.starts_with("the body is not JSON: "));
  CHECK(tab.find("control character") != std::string::npos);
  // A syntax error after the payload names the byte of the whole body.
  const auto body = R"({"tokens_b64":")" + b64 + R"(","rows":2,})";
  const auto syntax = error_of(body);
  CHECK(syntax.find("column " + std::to_string(body.size())) != std::string::npos);
}
