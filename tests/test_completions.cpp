// POST /v1/completions on the gateway of a 3-node language-model cluster (in one process):
// greedy and seeded completions equal the in-process decode byte for byte (prompts from 1 to
// 4,096 bytes, windows restarting), streamed events add up to the same text and end with
// [DONE], stop strings, echo and logprobs do what the OpenAI API says, a client that leaves
// mid-stream leaves no session behind, past the queue a 429 with Retry-After, and /metrics
// parses as the Prometheus text format with the counts the requests made.

#include "experts/model/checkpoint.hpp"
#include "experts/model/lm_decode.hpp"
#include "experts/base/model_config.hpp"
#include "eventually.hpp"
#include "http_client.hpp"
#include "local_cluster_fixture.hpp"
#include "net/completion_driver.hpp"
#include "net/completion_text.hpp"
#include "net/http_gateway.hpp"
#include "net/serve_load.hpp"
#include "random_model.hpp"
#include "scratch_dir.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <future>
#include <map>
#include <regex>
#include <sstream>

using namespace eoe;
using nlohmann::json;
namespace asio = boost::asio;

namespace {

// The served model but for its context, which each cluster sets: the layers first, then the
// [model] table the context key is appended to.
const std::string lm_config = R"(
layer = [
  { kind = "attention", heads = 4 },
  { kind = "eoe", experts = 4, hidden = 24, score_columns = 4, mode = "topk", k = 2 },
  { kind = "attention", heads = 2 },
  { kind = "eoe", experts = 3, hidden = 16, score_columns = 2, mode = "topk", k = 1 },
]
[model]
name = "tiny-lm"
kind = "lm"
vocab = 256
dim = 32
seed = 4
)";

struct lm_cluster {
  experts::model model;
  // Its checkpoint, removed last however the case ends (a failed start included).
  test::scratch_dir file{std::filesystem::temp_directory_path()
                         / ("eoe_test_completions_" + std::to_string(::getpid()) + ".ckpt")};
  std::string path;
  test::local_cluster cluster;
  std::unique_ptr<net::http_gateway> gateway;

  static experts::model make(std::int64_t context) {
    auto c = experts::parse_model_config(lm_config + "context = " + std::to_string(context) + "\n",
                                         "<test>");
    REQUIRE(c.has_value());
    return test::random_model(*c, 17);
  }

  static std::string save(const experts::model& m, const std::filesystem::path& to) {
    REQUIRE(experts::save_checkpoint(m, to.string()).has_value());
    return to.string();
  }

  /// A model whose context holds `context` positions (its window) on 3 nodes, shards of 16.
  explicit lm_cluster(net::gateway_settings s = {}, std::int64_t context = 32)
    : model(make(context)), path(save(model, file.path)), cluster(path, 3, 16) {
    if (s.deadline_ms == 5000)
      s.deadline_ms = 20000;
    gateway = std::make_unique<net::http_gateway>(cluster.sys, cluster.coordinator, model.config, s);
  }

  ~lm_cluster() {
    gateway.reset();
  }

  std::uint16_t port() const {
    return gateway->port();
  }

  /// generate() in-process with the layout the cluster uses.
  std::string reference(const std::string& prompt, int tokens, double temperature = 0,
                        std::uint64_t seed = 1, double top_p = 1) const {
    experts::sampling s;
    s.tokens = tokens;
    s.temperature = temperature;
    s.top_p = top_p;
    s.seed = seed;
    return experts::generate(model, prompt, s, experts::kv_layout{16, 64});
  }
};

/// Gateway settings of `concurrency` requests in the cluster at once and `queue` waiting.
net::gateway_settings limits(std::uint32_t concurrency, std::uint32_t queue) {
  net::gateway_settings s;
  s.max_concurrency = concurrency;
  s.max_queue = queue;
  return s;
}

test::http_reply post(std::uint16_t port, const json& body) {
  return test::call_http(port, "POST", "/v1/completions", body.dump());
}

/// The bytes a choice generated, from its logprobs' tokens ("bytes:\xHH" for bytes >= 0x80).
std::string bytes_of(const json& logprobs) {
  std::string out;
  for (const auto& t : logprobs.at("tokens")) {
    const auto s = t.get<std::string>();
    if (s.starts_with("bytes:\\x"))
      out.push_back(static_cast<char>(std::stoi(s.substr(8), nullptr, 16)));
    else
      out += s;
  }
  return out;
}

/// The events of a stream's body: each data line's JSON (the last, "[DONE]", as a string).
std::vector<json> events_of(const std::string& body) {
  std::vector<json> out;
  size_t at = 0;
  while (at < body.size()) {
    const auto end = body.find("\n\n", at);
    REQUIRE(end != std::string::npos); // every event ends with a blank line
    const auto event = body.substr(at, end - at);
    REQUIRE(event.starts_with("data: "));
    const auto data = event.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
    at = end + 2;
  }
  return out;
}

/// A strict reader of the Prometheus text format (version 0.0.4): every sample's family has
/// its TYPE first, names and labels are well formed, values are numbers, a histogram's
/// buckets rise to +Inf, which equals its _count. Returns each sample line's value by
/// "name{labels}".
std::map<std::string, double> parse_prometheus(const std::string& text) {
  std::map<std::string, double> samples;
  std::vector<std::pair<std::string, double>> in_order;
  std::map<std::string, std::string> types;
  const std::regex type_line{R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))"};
  const std::regex sample_line{
    R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN))"};
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    INFO(line);
    if (line.empty())
      continue;
    std::smatch m;
    if (line.starts_with("# HELP "))
      continue;
    if (line.starts_with("# TYPE ")) {
      REQUIRE(std::regex_match(line, m, type_line));
      REQUIRE_FALSE(types.contains(m[1].str())); // one TYPE per family
      types[m[1].str()] = m[2].str();
      continue;
    }
    REQUIRE(std::regex_match(line, m, sample_line));
    auto family = m[1].str();
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!types.contains(family) && family.ends_with(suffix))
        family = family.substr(0, family.size() - std::strlen(suffix));
    REQUIRE(types.contains(family));
    const auto key = m[1].str() + m[2].str();
    REQUIRE_FALSE(samples.contains(key));
    samples[key] = std::stod(m[7].str() == "+Inf" ? "inf" : m[7].str());
    in_order.emplace_back(key, samples[key]);
  }
  for (const auto& [family, type] : types) {
    if (type != "histogram")
      continue;
    INFO(family);
    double last = 0;
    bool inf = false;
    for (const auto& [key, v] : in_order) // in the text's order: le rising
      if (key.starts_with(family + "_bucket{")) {
        CHECK(v >= last);
        last = v;
        inf = inf || key.find("le=\"+Inf\"") != std::string::npos;
      }
    CHECK(inf);
    REQUIRE(samples.contains(family + "_count"));
    CHECK(samples.at(family + "_bucket{le=\"+Inf\"}") == samples.at(family + "_count"));
  }
  return samples;
}

std::map<std::string, double> metrics(std::uint16_t port) {
  const auto r = test::call_http(port, "GET", "/metrics");
  REQUIRE(r.status == 200);
  return parse_prometheus(r.body);
}

} // namespace

TEST_CASE("completions over HTTP equal the in-process decode byte for byte", "[completions][gateway]") {
  lm_cluster lm;
  const auto port = lm.port();
  SECTION("greedy, prompts of 1 to 4,096 bytes, past the window") {
    for (const auto& [prompt, tokens] : std::vector<std::pair<std::string, int>>{
           {"a", 5}, {"Hello, mesh", 70}, {std::string(4096, 'x') + "tail", 40}}) {
      INFO("prompt of " << prompt.size() << " bytes, " << tokens << " tokens");
      const auto r = post(port, {{"model", "tiny-lm"}, {"prompt", prompt}, {"max_tokens", tokens},
                                 {"temperature", 0}, {"logprobs", 0}});
      REQUIRE(r.status == 200);
      const auto j = json::parse(r.body);
      const auto& c = j.at("choices").at(0);
      const auto want = lm.reference(prompt, tokens);
      CHECK(bytes_of(c.at("logprobs")) == want);
      CHECK(c.at("text").get<std::string>() == net::utf8_replacing(want));
      CHECK(c.at("finish_reason") == "length");
      CHECK(j.at("usage").at("prompt_tokens") == prompt.size());
      CHECK(j.at("usage").at("completion_tokens") == tokens);
      CHECK(j.at("model") == "tiny-lm");
      CHECK(j.at("object") == "text_completion");
    }
  }
  SECTION("a 4,000-byte prompt in a window of 4,096 positions, past its end") {
    lm_cluster wide{{}, 4096};
    std::string prompt;
    for (int i = 0; prompt.size() < 4000; ++i)
      prompt += "line " + std::to_string(i) + " of a long prompt\n";
    prompt.resize(4000);
    const auto r = post(wide.port(), {{"model", "tiny-lm"}, {"prompt", prompt}, {"max_tokens", 120},
                                      {"temperature", 0}, {"logprobs", 0}});
    REQUIRE(r.status == 200);
    const auto j = json::parse(r.body);
    CHECK(bytes_of(j["choices"][0]["logprobs"]) == wide.reference(prompt, 120));
    CHECK(j["usage"]["prompt_tokens"] == 4000);
  }
  SECTION("seeded sampling: choice i draws with seed + i, in the order prompts x n") {
    const auto r = post(port, {{"model", "tiny-lm"}, {"prompt", {"one", "two"}}, {"n", 2},
                               {"max_tokens", 30}, {"temperature", 0.9}, {"top_p", 0.95},
                               {"seed", 40}, {"logprobs", 1}});
    REQUIRE(r.status == 200);
    const auto j = json::parse(r.body);
    REQUIRE(j.at("choices").size() == 4);
    for (size_t i = 0; i < 4; ++i) {
      INFO("choice " << i);
      CHECK(j["choices"][i]["index"] == i);
      CHECK(bytes_of(j["choices"][i]["logprobs"])
            == lm.reference(i < 2 ? "one" : "two", 30, 0.9, 40 + i, 0.95));
    }
    CHECK(j.at("usage").at("prompt_tokens") == 3 * 4);
    CHECK(j.at("usage").at("completion_tokens") == 30 * 4);
  }
  SECTION("logprobs equal the in-process decoder's log-softmax; echo puts the prompt first") {
    const std::string prompt = "echo me";
    const auto r = post(port, {{"model", "tiny-lm"}, {"prompt", prompt}, {"max_tokens", 3},
                               {"temperature", 0}, {"logprobs", 2}, {"echo", true}});
    REQUIRE(r.status == 200);
    const auto c = json::parse(r.body).at("choices").at(0);
    const auto want = lm.reference(prompt, 3);
    CHECK(c.at("text").get<std::string>() == prompt + net::utf8_replacing(want));
    const auto& lp = c.at("logprobs");
    CHECK(bytes_of(lp) == prompt + want);
    CHECK(lp.at("token_logprobs").at(0).is_null()); // nothing scores the first byte
    experts::lm_decoder local{lm.model, experts::kv_layout{16, 64}};
    const auto all = prompt + want;
    const matrix logits = local.feed({reinterpret_cast<const std::uint8_t*>(all.data()), all.size() - 1});
    for (size_t t = 1; t < all.size(); ++t) {
      const matrix row = logits.row(static_cast<Eigen::Index>(t - 1));
      const auto expect = net::logprob_of(row.data(), 256, static_cast<std::uint8_t>(all[t]), 2);
      CHECK(lp["token_logprobs"][t].get<double>() == Approx(*expect.logprob).margin(1e-4));
      CHECK(lp["top_logprobs"][t].size() == 2);
      CHECK(lp["text_offset"][t] == t);
    }
  }
  SECTION("a stop string ends the text before it, finish_reason stop") {
    const auto full = lm.reference("stop", 60);
    // The first ASCII byte after the third: the stop string.
    size_t at = 3;
    while (at < full.size() && static_cast<unsigned char>(full[at]) >= 0x80)
      ++at;
    REQUIRE(at < full.size());
    const std::string stop(1, full[at]);
    const auto cut = full.find(stop);
    const auto r = post(port, {{"model", "tiny-lm"}, {"prompt", "stop"}, {"max_tokens", 60},
                               {"temperature", 0}, {"stop", {stop, "never-seen"}}});
    REQUIRE(r.status == 200);
    const auto j = json::parse(r.body);
    CHECK(j["choices"][0]["text"].get<std::string>() == net::utf8_replacing(full.substr(0, cut)));
    CHECK(j["choices"][0]["finish_reason"] == "stop");
    CHECK(j["usage"]["completion_tokens"] == cut + 1);
  }
  SECTION("streamed: one event per byte that completes text, the same text, then [DONE]") {
    const std::string prompt = "stream";
    const auto r = post(port, {{"model", "tiny-lm"}, {"prompt", prompt}, {"max_tokens", 50},
                               {"temperature", 0}, {"stream", true},
                               {"stream_options", {{"include_usage", true}}}});
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "text/event-stream");
    const auto events = events_of(r.body);
    REQUIRE(events.size() >= 3);
    CHECK(events.back() == "[DONE]");
    const auto& usage = events[events.size() - 2];
    CHECK(usage.at("choices").empty());
    CHECK(usage.at("usage").at("completion_tokens") == 50);
    std::string text;
    for (size_t i = 0; i + 2 < events.size(); ++i) {
      const auto& c = events[i].at("choices").at(0);
      text += c.at("text").get<std::string>();
      CHECK(c.at("finish_reason") == (i + 3 == events.size() ? json("length") : json(nullptr)));
    }
    CHECK(text == net::utf8_replacing(lm.reference(prompt, 50)));
  }
}

TEST_CASE("completions: bad requests are named in the OpenAI shape; a classifier cluster has "
          "none",
          "[completions][gateway]") {
  lm_cluster lm;
  const auto port = lm.port();
  const auto bad = post(port, {{"model", "tiny-lm"}, {"prompt", "x"}, {"max_tokens", -1}});
  CHECK(bad.status == 400);
  const auto e = json::parse(bad.body).at("error");
  CHECK(e.at("type") == "invalid_request_error");
  CHECK(e.at("param") == "max_tokens");
  CHECK_THAT(e.at("message").get<std::string>(), Catch::Contains("\"max_tokens\" must be an integer in 1..4096"));
  const auto unknown = post(port, {{"model", "other"}, {"prompt", "x"}});
  CHECK(unknown.status == 404);
  CHECK(json::parse(unknown.body)["error"]["code"] == "model_not_found");
  const auto get = test::call_http(port, "GET", "/v1/completions");
  CHECK(get.status == 405);
  CHECK(get.allow == "POST");
  const auto models = test::call_http(port, "GET", "/v1/models");
  REQUIRE(models.status == 200);
  CHECK(json::parse(models.body)["data"][0]["id"] == "tiny-lm");
  // What was refused cost nothing: the next request is answered.
  CHECK(post(port, {{"model", "tiny-lm"}, {"prompt", "x"}, {"max_tokens", 2}}).status == 200);
  CHECK(metrics(port).at("eoe_completions_total{outcome=\"bad_request\"}") == 2);

  test::local_cluster classifier{"", 1};
  auto m = experts::default_model_config();
  net::http_gateway gw{classifier.sys, classifier.coordinator, m, {}};
  const auto r = post(gw.port(), {{"model", m.name}, {"prompt", "x"}});
  CHECK(r.status == 404);
  CHECK_THAT(r.body, Catch::Contains("serves a classifier, not a language model"));
}

namespace {

/// Sends a completion request on a new connection and returns the socket, unread.
std::unique_ptr<asio::ip::tcp::socket> send_raw(asio::io_context& io, std::uint16_t port,
                                                const json& body) {
  auto sock = std::make_unique<asio::ip::tcp::socket>(io);
  sock->connect({asio::ip::make_address("127.0.0.1"), port});
  const auto b = body.dump();
  asio::write(*sock, asio::buffer("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: "
                                  + std::to_string(b.size()) + "\r\n\r\n" + b));
  return sock;
}

} // namespace

TEST_CASE("a client that leaves mid-stream ends its session at once; past the queue, 429 with "
          "Retry-After; /metrics counts it all",
          "[completions][gateway]") {
  lm_cluster lm{limits(1, 0)};
  const auto port = lm.port();
  REQUIRE(post(port, {{"model", "tiny-lm"}, {"prompt", "warm"}, {"max_tokens", 4}}).status == 200);

  // A long stream, read until its first event, then dropped.
  asio::io_context io;
  auto sock = send_raw(io, port, {{"model", "tiny-lm"}, {"prompt", "leave"}, {"max_tokens", 4000},
                                  {"stream", true}});
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) {
    boost::system::error_code ec;
    const auto n = sock->read_some(asio::buffer(buf), ec);
    REQUIRE_FALSE(ec);
    got.append(buf, n);
  }
  CHECK_THAT(got, Catch::Contains("Transfer-Encoding: chunked"));
  // Its slot is taken and nothing may wait: the next is refused at once.
  const auto refused = post(port, {{"model", "tiny-lm"}, {"prompt", "x"}});
  CHECK(refused.status == 429);
  CHECK(refused.retry_after == "1");
  CHECK(json::parse(refused.body)["error"]["type"] == "rate_limit_error");
  sock->close();
  CHECK(test::eventually([&] {
    const auto m = metrics(port);
    return m.at("eoe_sessions_open") == 0 && m.at("eoe_kv_positions{node=\"n1\"}") == 0
           && m.count("eoe_completions_total{outcome=\"client_gone\"}") == 1;
  }));
  const auto m = metrics(port);
  CHECK(m.at("eoe_generation_tokens_total") < 4000 + 4);
  CHECK(m.at("eoe_completions_total{outcome=\"ok\"}") == 1);
  CHECK(m.at("eoe_completions_total{outcome=\"overloaded\"}") == 1);
  CHECK(m.at("eoe_time_to_first_token_seconds_count") == 2);
  CHECK(m.at("eoe_prompt_tokens_total") == 4); // "warm"; the dropped one never finished
  CHECK(m.at("eoe_kv_positions{node=\"n2\"}") == 0);
  CHECK(m.at("eoe_step_tokens_count") >= 4);
  CHECK(m.at("eoe_gateway_waiting_requests") == 0);
  CHECK(m.at("eoe_requests_in_flight") == 0);
  // The slot is free again.
  CHECK(post(port, {{"model", "tiny-lm"}, {"prompt", "again"}, {"max_tokens", 2}}).status == 200);
}

TEST_CASE("the serving benchmark's client: every streamed answer timed and equal to the "
          "in-process decode",
          "[completions][gateway]") {
  lm_cluster lm;
  net::serve_load_options o;
  o.port = lm.port();
  o.model = net::served_model("127.0.0.1", lm.port());
  CHECK(o.model == "tiny-lm");
  o.prompts = {"first prompt", "a second one", std::string("bytes \xFF\xFE that are no UTF-8")};
  o.requests = 9;
  o.concurrency = 4;
  o.rate = 200; // Poisson arrivals
  o.max_tokens = 20;
  o.max_tokens_hi = 40;
  o.temperature = 0.7;
  o.seed = 5;
  const auto report = net::run_serve_load(o);
  REQUIRE(report.results.size() == 9);
  for (const auto& r : report.results) {
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.max_tokens >= 20);
    CHECK(r.max_tokens <= 40);
    CHECK(r.bytes == lm.reference(o.prompts[r.prompt], static_cast<int>(r.max_tokens), 0.7, r.seed));
    CHECK(r.finish_reason == "length");
    CHECK(r.ttft_ms > 0);
    CHECK(r.itl_ms.size() == r.max_tokens - 1);
    CHECK(r.e2e_ms >= r.ttft_ms);
  }
  CHECK(report.seconds > 0);
  CHECK_THROWS_WITH(net::served_model("127.0.0.1", 1), Catch::Contains("no gateway at 127.0.0.1:1"));
}

TEST_CASE("a client that leaves while its request waits, or before its session is open, "
          "leaves nothing behind",
          "[completions][gateway]") {
  lm_cluster lm{limits(1, 1)};
  const auto port = lm.port();
  asio::io_context io;
  // Closed at once, again and again: while the session opens, or before anything ran.
  for (int i = 0; i < 5; ++i) {
    auto sock = send_raw(io, port, {{"model", "tiny-lm"}, {"prompt", "gone"}, {"max_tokens", 500},
                                    {"stream", true}});
    sock->close();
  }
  CHECK(test::eventually([&] {
    const auto m = metrics(port);
    return m.at("eoe_sessions_open") == 0 && m.at("eoe_requests_in_flight") == 0
           && m.at("eoe_gateway_waiting_requests") == 0;
  }));
  // One holds the slot, one waits, and the waiting one leaves: its place is given up.
  auto holder = send_raw(io, port, {{"model", "tiny-lm"}, {"prompt", "hold"}, {"max_tokens", 4000},
                                    {"stream", true}});
  char buf[4096];
  (void)holder->read_some(asio::buffer(buf)); // its header: it runs
  auto waiter = send_raw(io, port, {{"model", "tiny-lm"}, {"prompt", "wait"}, {"max_tokens", 4}});
  CHECK(test::eventually([&] { return metrics(port).at("eoe_gateway_waiting_requests") == 1; }));
  const auto gone_before = metrics(port).count("eoe_completions_total{outcome=\"client_gone\"}")
                             ? metrics(port).at("eoe_completions_total{outcome=\"client_gone\"}")
                             : 0.0;
  waiter->close();
  CHECK(test::eventually([&] {
    const auto m = metrics(port);
    return m.at("eoe_gateway_waiting_requests") == 0
           && m.at("eoe_completions_total{outcome=\"client_gone\"}") == gone_before + 1;
  }));
  // The queue has room again while the holder runs.
  auto next = std::async(std::launch::async, [&] {
    return post(port, {{"model", "tiny-lm"}, {"prompt", "next"}, {"max_tokens", 3}});
  });
  CHECK(test::eventually([&] { return metrics(port).at("eoe_gateway_waiting_requests") == 1; }));
  holder->close();
  const auto r = next.get();
  CHECK(r.status == 200);
  CHECK(test::eventually([&] { return metrics(port).at("eoe_sessions_open") == 0; }));
}
