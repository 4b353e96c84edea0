// The completions API's plain parts, without a server: the text a byte-level model's bytes
// become (characters held until whole, stop strings cut), the request body's checks (every
// field's type, range and combination named), the answer's shapes, log-probabilities, the
// gateway's admission queue, and the generation's steps against generate().

#include "experts/lm_decode.hpp"
#include "experts/lm_generate.hpp"
#include "experts/model_config.hpp"
#include "net/admission.hpp"
#include "net/completion_driver.hpp"
#include "net/completion_json.hpp"
#include "net/completion_text.hpp"
#include "random_model.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace eoe;
using nlohmann::json;

namespace {

const std::string replacement = "\xEF\xBF\xBD";

std::string pushed(net::completion_text& t, std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes)
    out += t.push(b);
  return out;
}

} // namespace

TEST_CASE("completion text: a character split over bytes is held until whole; a byte that is "
          "no character is U+FFFD",
          "[completions]") {
  net::completion_text t;
  CHECK(t.push(0xC3).empty()); // é = C3 A9
  CHECK(t.push(0xA9) == "\xC3\xA9");
  CHECK(t.push('a') == "a");
  CHECK(t.push(0xFF) == replacement); // never in UTF-8
  CHECK(t.push(0xE2).empty());        // starts a 3-byte character...
  CHECK(t.push('x') == replacement + "x"); // ...that 'x' breaks off
  CHECK(t.push(0xE0).empty());
  CHECK(t.push(0x80) == replacement + replacement); // E0 takes A0..BF second: no prefix
  CHECK(t.push(0xF0).empty());
  CHECK(t.push(0x9F).empty());
  CHECK(t.push(0x98).empty());
  CHECK(t.push(0x80) == "\xF0\x9F\x98\x80"); // U+1F600
  CHECK(t.push(0xE2).empty());
  CHECK(t.push(0x82).empty());
  CHECK(t.finish() == replacement + replacement); // it never completed
  CHECK(net::unfinished_utf8_tail("ab\xE2\x82") == 2);
  CHECK(net::unfinished_utf8_tail("ab\xE2\x82\xAC") == 0);
  CHECK(net::unfinished_utf8_tail("\xED\xA0") == 0); // a surrogate's start
  CHECK(net::utf8_replacing("a\xC0\x80z") == "a" + replacement + replacement + "z");
}

TEST_CASE("stop strings: the text ends before the stop, and what could begin one is held",
          "[completions]") {
  net::completion_text t{{"\n\n", "END"}};
  CHECK(t.push('a') == "a");
  CHECK(t.push('\n').empty()); // may begin "\n\n"
  CHECK(t.push('b') == "\nb");
  CHECK(pushed(t, "EN").empty());
  CHECK_FALSE(t.stopped());
  CHECK(t.push('D').empty());
  CHECK(t.stopped());
  CHECK(t.push('z').empty()); // nothing after the stop
  CHECK(t.finish().empty());

  net::completion_text text_then_stop{{"END"}};
  CHECK(pushed(text_then_stop, "xyEN") == "xy");
  CHECK(pushed(text_then_stop, "Dq").empty());
  CHECK(text_then_stop.stopped());

  net::completion_text multibyte{{"\xC3\xA9"}}; // "é"
  CHECK(multibyte.push(0xC3).empty());
  CHECK(multibyte.push(0xA9).empty());
  CHECK(multibyte.stopped());

  net::completion_text unfinished{{"xyz"}};
  CHECK(pushed(unfinished, "axy") == "a");
  CHECK(unfinished.finish() == "xy"); // the stop never completed
}

TEST_CASE("a completion request: every field's type, range and combination is named",
          "[completions]") {
  net::completion_limits lim;
  lim.model = "eoe";
  lim.max_tokens = 100;
  lim.max_choices = 8;
  lim.max_prompt_bytes = 1000;
  const auto ok = net::parse_completion_body(
    R"({"model":"eoe","prompt":"hi","max_tokens":5,"temperature":0,"top_p":0.5,"seed":-3,
        "stop":["a","bc"],"stream":true,"stream_options":{"include_usage":true},"n":2,
        "echo":true,"logprobs":3,"user":"u","frequency_penalty":0,"presence_penalty":null,
        "best_of":2,"logit_bias":{}})",
    lim);
  CHECK(ok.prompts == std::vector<std::string>{"hi"});
  CHECK(ok.max_tokens == 5);
  CHECK(ok.temperature == 0);
  CHECK(ok.top_p == 0.5);
  CHECK(ok.seed == static_cast<std::uint64_t>(-3));
  CHECK(ok.stop == std::vector<std::string>{"a", "bc"});
  CHECK(ok.stream);
  CHECK(ok.include_usage);
  CHECK(ok.n == 2);
  CHECK(ok.echo);
  CHECK(ok.logprobs == 3u);
  const auto defaults = net::parse_completion_body(R"({"model":"eoe","prompt":"x"})", lim);
  CHECK(defaults.max_tokens == 16);
  CHECK(defaults.temperature == 1.0);
  CHECK_FALSE(defaults.seed);
  CHECK_FALSE(defaults.logprobs);
  CHECK(net::parse_completion_body(R"({"model":"eoe","prompt":["a","b"]})", lim).prompts.size() == 2);
  CHECK(net::parse_completion_body(R"({"model":"eoe","prompt":[104,255]})", lim).prompts
        == std::vector<std::string>{"h\xFF"});
  CHECK(net::parse_completion_body(R"({"model":"eoe","prompt":[[104],[105,106]]})", lim).prompts
        == std::vector<std::string>{"h", "ij"});

  struct bad_case {
    const char* body;
    unsigned status;
    const char* param;
    const char* says;
  };
  const bad_case cases[] = {
    {"[1]", 400, "", "must be a JSON object, not array"},
    {"{\"model\":", 400, "", "the body is not JSON"},
    {"{\"model\":\"eoe\",\"prompt\":\"a\xFF\"}", 400, "", "0xFF is not UTF-8"},
    {R"({"prompt":"a"})", 400, "model", "\"model\" must name the served model"},
    {R"({"model":7,"prompt":"a"})", 400, "model", "\"model\" must name"},
    {R"({"model":"gpt-4","prompt":"a"})", 404, "model", "the model \"gpt-4\" does not exist"},
    {R"({"model":"eoe"})", 400, "prompt", "\"prompt\" is required"},
    {R"({"model":"eoe","prompt":""})", 400, "prompt", "prompt 0 is empty"},
    {R"({"model":"eoe","prompt":[]})", 400, "prompt", "prompt 0 is empty"},
    {R"({"model":"eoe","prompt":["a",""]})", 400, "prompt", "prompt 1 is empty"},
    {R"({"model":"eoe","prompt":3})", 400, "prompt", "must be a string, an array"},
    {R"({"model":"eoe","prompt":["a",3]})", 400, "prompt", "\"prompt[1]\" must be a string"},
    {R"({"model":"eoe","prompt":[104,256]})", 400, "prompt", "\"prompt[1]\" must be a token id"},
    {R"({"model":"eoe","prompt":[[104,-1]]})", 400, "prompt[0]", "\"prompt[0][1]\" must be a token id"},
    {R"({"model":"eoe","prompt":"a","max_tokens":0})", 400, "max_tokens", "integer in 1..100, not 0"},
    {R"({"model":"eoe","prompt":"a","max_tokens":101})", 400, "max_tokens", "in 1..100"},
    {R"({"model":"eoe","prompt":"a","max_tokens":"5"})", 400, "max_tokens", "not \"5\""},
    {R"({"model":"eoe","prompt":"a","max_tokens":2.5})", 400, "max_tokens", "an integer"},
    {R"({"model":"eoe","prompt":"a","temperature":-0.1})", 400, "temperature", "a number in 0..2"},
    {R"({"model":"eoe","prompt":"a","temperature":"hot"})", 400, "temperature", "a number"},
    {R"({"model":"eoe","prompt":"a","top_p":0})", 400, "top_p", "above 0"},
    {R"({"model":"eoe","prompt":"a","top_p":1.5})", 400, "top_p", "a number in 0..1"},
    {R"({"model":"eoe","prompt":"a","seed":1.5})", 400, "seed", "an integer"},
    {R"({"model":"eoe","prompt":"a","stop":""})", 400, "stop", "an empty string"},
    {R"({"model":"eoe","prompt":"a","stop":["a",1]})", 400, "stop", "\"stop[1]\" must be a string"},
    {R"({"model":"eoe","prompt":"a","stop":["a","b","c","d","e"]})", 400, "stop", "at most 4"},
    {R"({"model":"eoe","prompt":"a","stop":{}})", 400, "stop", "a string or an array"},
    {R"({"model":"eoe","prompt":"a","stream":"yes"})", 400, "stream", "true or false"},
    {R"({"model":"eoe","prompt":"a","stream_options":{"include_usage":true}})", 400,
     "stream_options", "only allowed with \"stream\": true"},
    {R"({"model":"eoe","prompt":"a","stream":true,"stream_options":{"x":1}})", 400,
     "stream_options", "unknown field \"stream_options.x\""},
    {R"({"model":"eoe","prompt":"a","n":0})", 400, "n", "in 1..8"},
    {R"({"model":"eoe","prompt":["a","b","c"],"n":3})", 400, "n", "3 prompts x n = 3 is 9 choices"},
    {R"({"model":"eoe","prompt":"a","echo":1})", 400, "echo", "true or false"},
    {R"({"model":"eoe","prompt":"a","logprobs":21})", 400, "logprobs", "in 0..20"},
    {R"({"model":"eoe","prompt":"a","logprobs":true})", 400, "logprobs", "an integer"},
    {R"({"model":"eoe","prompt":"a","user":5})", 400, "user", "\"user\" must be a string"},
    {R"({"model":"eoe","prompt":"a","frequency_penalty":0.5})", 400, "frequency_penalty", "not supported"},
    {R"({"model":"eoe","prompt":"a","best_of":3})", 400, "best_of", "not supported"},
    {R"({"model":"eoe","prompt":"a","suffix":"z"})", 400, "suffix", "not supported"},
    {R"({"model":"eoe","prompt":"a","logit_bias":{"1":5}})", 400, "logit_bias", "not supported"},
    {R"({"model":"eoe","prompt":"a","temprature":1})", 400, "temprature", "unknown field \"temprature\""},
  };
  for (const auto& c : cases) {
    INFO(c.body);
    try {
      (void)net::parse_completion_body(c.body, lim);
      FAIL("accepted");
    } catch (const net::api_error& e) {
      CHECK(static_cast<unsigned>(e.status) == c.status);
      CHECK(e.param == c.param);
      CHECK_THAT(e.what(), Catch::Contains(c.says));
    }
  }
  const std::string big = R"({"model":"eoe","prompt":")" + std::string(1001, 'x') + "\"}";
  CHECK_THROWS_WITH(net::parse_completion_body(big, lim),
                    Catch::Contains("prompt 0 has 1001 bytes, more than this server takes (1000)"));
}

TEST_CASE("the answers' shapes: a completion, a stream chunk, the usage chunk, an error, the "
          "models",
          "[completions]") {
  net::completion_choice c;
  c.text = "hi";
  c.finish_reason = "length";
  c.with_logprobs = true;
  c.logprobs = {{'h', -0.5f, {{'h', -0.5f}}}, {0xE2, -1.0f, {{0xE2, -1.0f}}}};
  const auto all = json::parse(net::completion_json("cmpl-1", 7, "eoe", {c}, {3, 2}));
  CHECK(all["object"] == "text_completion");
  CHECK(all["id"] == "cmpl-1");
  CHECK(all["created"] == 7);
  CHECK(all["choices"][0]["text"] == "hi");
  CHECK(all["choices"][0]["finish_reason"] == "length");
  CHECK(all["choices"][0]["logprobs"]["tokens"] == json({"h", "bytes:\\xe2"}));
  CHECK(all["choices"][0]["logprobs"]["text_offset"] == json({0, 1}));
  CHECK(all["usage"] == json({{"prompt_tokens", 3}, {"completion_tokens", 2}, {"total_tokens", 5}}));

  const auto chunk = net::completion_chunk("cmpl-1", 7, "eoe", 1, "x", "", nullptr, 0);
  REQUIRE(chunk.starts_with("data: "));
  REQUIRE(chunk.ends_with("\n\n"));
  const auto cj = json::parse(chunk.substr(6));
  CHECK(cj["choices"][0]["index"] == 1);
  CHECK(cj["choices"][0]["finish_reason"].is_null());
  CHECK(cj["choices"][0]["logprobs"].is_null());
  const auto usage = json::parse(net::usage_chunk("cmpl-1", 7, "eoe", {3, 2}).substr(6));
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["total_tokens"] == 5);

  const auto err = json::parse(net::api_error_json(boost::beast::http::status::bad_request,
                                                   "bad \xFF", "n"));
  CHECK(err["error"]["type"] == "invalid_request_error");
  CHECK(err["error"]["param"] == "n");
  CHECK(err["error"]["code"].is_null());
  CHECK(err["error"]["message"] == "bad \\xFF");
  CHECK(json::parse(net::api_error_json(boost::beast::http::status::too_many_requests, "x"))
          ["error"]["type"] == "rate_limit_error");
  const auto models = json::parse(net::models_json("eoe", 9));
  CHECK(models["object"] == "list");
  CHECK(models["data"][0]["id"] == "eoe");
  CHECK(models["data"][0]["object"] == "model");
}

TEST_CASE("log-probabilities: a log-softmax of the logits, the best alternatives first",
          "[completions]") {
  const std::vector<float> logits{1.0f, 3.0f, 2.0f, 3.0f};
  const auto lp = net::logprob_of(logits.data(), logits.size(), 2, 3);
  double z = 0;
  for (float x : logits)
    z += std::exp(static_cast<double>(x));
  CHECK(*lp.logprob == Approx(2.0 - std::log(z)).epsilon(1e-6));
  REQUIRE(lp.top.size() == 3);
  CHECK(lp.top[0].first == 1); // ties keep the lower token first
  CHECK(lp.top[1].first == 3);
  CHECK(lp.top[2].first == 2);
  CHECK(lp.top[0].second == Approx(3.0 - std::log(z)).epsilon(1e-6));
  CHECK(net::logprob_of(logits.data(), logits.size(), 0, 0).top.empty());
  CHECK(net::token_string('a') == "a");
  CHECK(net::token_string(0x80) == "bytes:\\x80");
}

TEST_CASE("the gateway's admission: runs up to its limit, queues the next in order, refuses "
          "past the queue",
          "[completions]") {
  net::admission a{2, 2};
  std::vector<int> started;
  CHECK(a.enter([&] { started.push_back(1); }) == net::admission::verdict::run);
  CHECK(a.enter([&] { started.push_back(2); }) == net::admission::verdict::run);
  CHECK(a.enter([&] { started.push_back(3); }) == net::admission::verdict::wait);
  CHECK(a.enter([&] { started.push_back(4); }) == net::admission::verdict::wait);
  CHECK(a.enter([&] { started.push_back(5); }) == net::admission::verdict::refuse);
  CHECK(a.running() == 2);
  CHECK(a.waiting() == 2);
  a.leave();
  CHECK(started == std::vector<int>{3});
  a.leave();
  CHECK(started == std::vector<int>{3, 4});
  CHECK(a.running() == 2);
  a.leave();
  a.leave();
  CHECK(a.running() == 0);
  CHECK(a.waiting() == 0);
}

TEST_CASE("a generation in steps samples what generate() samples, window restarts included",
          "[completions]") {
  auto c = experts::parse_model_config(R"(
[model]
kind = "lm"
vocab = 256
context = 16
dim = 16
seed = 2
[[layer]]
kind = "attention"
heads = 2
[[layer]]
kind = "eoe"
experts = 4
hidden = 8
score_columns = 2
mode = "topk"
k = 2
)",
                                       "<test>");
  REQUIRE(c.has_value());
  const auto m = test::random_model(*c, 3);
  experts::sampling s;
  s.tokens = 40; // past the 16-position window, twice
  s.temperature = 0.8;
  s.seed = 11;
  const std::string prompt = "a prompt longer than the window";
  const auto want = experts::generate(m, prompt, s);
  experts::generation g{16, prompt, s};
  experts::lm_decoder d{m};
  CHECK(g.prompt_fed() == 16);
  CHECK(g.next().restart);
  CHECK(g.next().tokens == prompt.substr(prompt.size() - 16));
  std::string got;
  int restarts = 0;
  while (!g.done()) {
    if (g.next().restart) {
      d.restart();
      ++restarts;
    }
    const auto& t = g.next().tokens;
    got.push_back(static_cast<char>(
      g.take(d.feed({reinterpret_cast<const std::uint8_t*>(t.data()), t.size()}))));
  }
  CHECK(got == want);
  CHECK(restarts >= 3);
  CHECK(g.generated() == 40);
  CHECK_THROWS_AS(g.take(matrix::Zero(1, 256)), std::logic_error);
  CHECK_THROWS_WITH((experts::generation{16, "", s}), Catch::Contains("at least one token"));
}
