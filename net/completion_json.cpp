#include "net/completion_json.hpp"

#include "experts/base/utf8.hpp"
#include "net/infer_json.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace eoe::net {

namespace {

using json = nlohmann::ordered_json; // the answers keep the OpenAI API's field order
using boost::beast::http::status;

[[noreturn]] void bad(std::string message, std::string param) {
  throw api_error(status::bad_request, std::move(message), std::move(param));
}

std::string quoted(const json& v) {
  return experts::quote_input(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// One prompt: a string, or a list of token ids (bytes 0..255).
std::string prompt_of(const json& v, const std::string& param) {
  if (v.is_string())
    return v.get<std::string>();
  if (!v.is_array())
    bad("\"" + param + "\" must be a string, an array of strings or of token ids, not " + quoted(v),
        param);
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const auto& t = v[i];
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 || t.get<std::int64_t>() > 255)
      bad("\"" + param + "[" + std::to_string(i) + "]\" must be a token id of this byte-level "
            "model (0..255), not " + quoted(t),
          param);
    out.push_back(static_cast<char>(t.get<std::int64_t>()));
  }
  return out;
}

double number_in(const json& v, const char* field, double lo, double hi) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo
      || v.get<double>() > hi) {
    char range[64];
    std::snprintf(range, sizeof range, "%g..%g", lo, hi);
    bad("\"" + std::string(field) + "\" must be a number in " + range + ", not " + quoted(v), field);
  }
  return v.get<double>();
}

std::uint32_t integer_in(const json& v, const char* field, std::int64_t lo, std::int64_t hi) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi)
    bad("\"" + std::string(field) + "\" must be an integer in " + std::to_string(lo) + ".."
          + std::to_string(hi) + ", not " + quoted(v),
        field);
  return static_cast<std::uint32_t>(v.get<std::int64_t>());
}

bool boolean(const json& v, const char* field) {
  if (!v.is_boolean())
    bad("\"" + std::string(field) + "\" must be true or false, not " + quoted(v), field);
  return v.get<bool>();
}

json logprobs_value(const std::vector<token_logprob>& tokens, size_t offset) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const auto& t : tokens) {
    toks.push_back(token_string(t.token));
    lps.push_back(t.logprob ? json(*t.logprob) : json(nullptr));
    if (!t.logprob) {
      tops.push_back(nullptr);
    } else {
      json top = json::object();
      for (auto [tok, lp] : t.top)
        top[token_string(tok)] = lp;
      tops.push_back(top);
    }
    offs.push_back(offset++);
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

} // namespace

completion_request parse_completion_body(std::string_view body, const completion_limits& limits) {
  try {
    check_json_text(body);
  } catch (const std::invalid_argument& e) {
    bad(e.what(), "");
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    bad("the body is not JSON: " + experts::quote_input(e.what(), 240), "");
  }
  if (!j.is_object())
    bad(std::string("the body must be a JSON object, not ") + j.type_name(), "");
  static const char* known[] = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed",
                                "stop", "stream", "stream_options", "n", "echo", "logprobs",
                                "user", "frequency_penalty", "presence_penalty", "best_of",
                                "suffix", "logit_bias"};
  for (const auto& item : j.items()) {
    const auto& k = item.key();
    if (std::find_if(std::begin(known), std::end(known), [&](const char* f) { return k == f; })
        == std::end(known))
      bad("unknown field \"" + experts::quote_input(k) + "\"", k);
  }
  // A null is an absent field, as OpenAI's clients send them.
  const auto given = [&](const char* f) { return j.contains(f) && !j[f].is_null(); };
  completion_request r;
  if (!given("model") || !j["model"].is_string())
    bad("\"model\" must name the served model (a string; GET /v1/models lists it)", "model");
  r.model = j["model"].get<std::string>();
  if (r.model != limits.model)
    throw api_error(status::not_found,
                    "the model \"" + experts::quote_input(r.model) + "\" does not exist; this "
                      "server serves \"" + limits.model + "\"",
                    "model", "model_not_found");
  if (!given("prompt"))
    bad("\"prompt\" is required", "prompt");
  const auto& p = j["prompt"];
  if (p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array())) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (!p[i].is_string() && !p[i].is_array())
        bad("\"prompt[" + std::to_string(i) + "]\" must be a string or an array of token ids "
              "like the others, not " + quoted(p[i]),
            "prompt");
      r.prompts.push_back(prompt_of(p[i], "prompt[" + std::to_string(i) + "]"));
    }
  } else {
    r.prompts.push_back(prompt_of(p, "prompt"));
  }
  if (r.prompts.empty())
    bad("\"prompt\" holds no prompt", "prompt");
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    if (r.prompts[i].empty())
      bad("prompt " + std::to_string(i) + " is empty: this model has no start token, give it "
            "at least one byte",
          "prompt");
    if (r.prompts[i].size() > limits.max_prompt_bytes)
      bad("prompt " + std::to_string(i) + " has " + std::to_string(r.prompts[i].size())
            + " bytes, more than this server takes (" + std::to_string(limits.max_prompt_bytes) + ")",
          "prompt");
  }
  if (given("max_tokens"))
    r.max_tokens = integer_in(j["max_tokens"], "max_tokens", 1, limits.max_tokens);
  if (given("temperature"))
    r.temperature = number_in(j["temperature"], "temperature", 0, 2);
  if (given("top_p")) {
    r.top_p = number_in(j["top_p"], "top_p", 0, 1);
    if (r.top_p <= 0)
      bad("\"top_p\" must be above 0 (1 samples among every token)", "top_p");
  }
  if (given("seed")) {
    if (!j["seed"].is_number_integer())
      bad("\"seed\" must be an integer, not " + quoted(j["seed"]), "seed");
    r.seed = j["seed"].is_number_unsigned() ? j["seed"].get<std::uint64_t>()
                                            : static_cast<std::uint64_t>(j["seed"].get<std::int64_t>());
  }
  if (given("stop")) {
    const auto& s = j["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (size_t i = 0; i < s.size(); ++i) {
        if (!s[i].is_string())
          bad("\"stop[" + std::to_string(i) + "]\" must be a string, not " + quoted(s[i]), "stop");
        r.stop.push_back(s[i].get<std::string>());
      }
    } else {
      bad("\"stop\" must be a string or an array of at most 4 strings, not " + quoted(s), "stop");
    }
    for (const auto& x : r.stop)
      if (x.empty())
        bad("\"stop\" holds an empty string, which would stop before the first byte", "stop");
  }
  if (given("stream"))
    r.stream = boolean(j["stream"], "stream");
  if (given("stream_options")) {
    const auto& o = j["stream_options"];
    if (!r.stream)
      bad("\"stream_options\" is only allowed with \"stream\": true", "stream_options");
    if (!o.is_object())
      bad("\"stream_options\" must be an object, not " + quoted(o), "stream_options");
    for (auto& [k, v] : o.items()) {
      if (k != "include_usage")
        bad("unknown field \"stream_options." + experts::quote_input(k) + "\"", "stream_options");
      r.include_usage = boolean(v, "stream_options.include_usage");
    }
  }
  if (given("n"))
    r.n = integer_in(j["n"], "n", 1, limits.max_choices);
  if (r.prompts.size() * r.n > limits.max_choices)
    bad(std::to_string(r.prompts.size()) + " prompts x n = " + std::to_string(r.n) + " is "
          + std::to_string(r.prompts.size() * r.n) + " choices, more than this server takes in "
          "one request (" + std::to_string(limits.max_choices) + ")",
        "n");
  if (given("echo"))
    r.echo = boolean(j["echo"], "echo");
  if (given("logprobs"))
    r.logprobs = integer_in(j["logprobs"], "logprobs", 0, 20);
  if (given("user") && !j["user"].is_string())
    bad("\"user\" must be a string, not " + quoted(j["user"]), "user");
  // Known to the OpenAI API, not done here: only their neutral values pass.
  for (const char* f : {"frequency_penalty", "presence_penalty"})
    if (given(f) && (!j[f].is_number() || j[f].get<double>() != 0))
      bad("\"" + std::string(f) + "\" is not supported by this server (only 0)", f);
  if (given("best_of") && (!j["best_of"].is_number_integer() || j["best_of"].get<std::int64_t>() != r.n))
    bad("\"best_of\" is not supported by this server (only equal to n)", "best_of");
  if (given("suffix"))
    bad("\"suffix\" is not supported by this server", "suffix");
  if (given("logit_bias") && !(j["logit_bias"].is_object() && j["logit_bias"].empty()))
    bad("\"logit_bias\" is not supported by this server", "logit_bias");
  return r;
}

std::string token_string(std::uint8_t token) {
  if (token < 0x80)
    return std::string(1, static_cast<char>(token));
  char hex[16];
  std::snprintf(hex, sizeof hex, "bytes:\\x%02x", token);
  return hex;
}

std::string logprobs_json(const std::vector<token_logprob>& tokens, size_t offset) {
  return dump(logprobs_value(tokens, offset));
}

std::string completion_json(std::string_view id, std::int64_t created, std::string_view model,
                            const std::vector<completion_choice>& choices, completion_usage usage) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    cs.push_back({{"index", i},
                  {"text", c.text},
                  {"finish_reason", c.finish_reason},
                  {"logprobs", c.with_logprobs ? logprobs_value(c.logprobs, 0) : json(nullptr)}});
  }
  return dump({{"id", id},
               {"object", "text_completion"},
               {"created", created},
               {"model", model},
               {"choices", cs},
               {"usage",
                {{"prompt_tokens", usage.prompt_tokens},
                 {"completion_tokens", usage.completion_tokens},
                 {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}})
         + "\n";
}

std::string completion_chunk(std::string_view id, std::int64_t created, std::string_view model,
                             std::uint32_t index, std::string_view text,
                             std::string_view finish_reason,
                             const std::vector<token_logprob>* logprobs, size_t offset) {
  json choice = {{"index", index},
                 {"text", text},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)},
                 {"logprobs", logprobs ? logprobs_value(*logprobs, offset) : json(nullptr)}};
  return "data: "
         + dump({{"id", id},
                 {"object", "text_completion"},
                 {"created", created},
                 {"model", model},
                 {"choices", json::array({choice})}})
         + "\n\n";
}

std::string usage_chunk(std::string_view id, std::int64_t created, std::string_view model,
                        completion_usage usage) {
  return "data: "
         + dump({{"id", id},
                 {"object", "text_completion"},
                 {"created", created},
                 {"model", model},
                 {"choices", json::array()},
                 {"usage",
                  {{"prompt_tokens", usage.prompt_tokens},
                   {"completion_tokens", usage.completion_tokens},
                   {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}})
         + "\n\n";
}

std::string api_error_json(status s, std::string_view message, std::string_view param,
                           std::string_view code) {
  const auto n = static_cast<unsigned>(s);
  const char* type = n == 429                 ? "rate_limit_error"
                     : n == 401 || n == 403   ? "authentication_error"
                     : n >= 500               ? "server_error"
                                              : "invalid_request_error";
  return dump({{"error",
                {{"message", experts::escape_invalid_utf8(message)},
                 {"type", type},
                 {"param", param.empty() ? json(nullptr) : json(param)},
                 {"code", code.empty() ? json(nullptr) : json(code)}}}})
         + "\n";
}

std::string models_json(std::string_view model, std::int64_t created) {
  return dump({{"object", "list"},
               {"data", json::array({{{"id", model},
                                      {"object", "model"},
                                      {"created", created},
                                      {"owned_by", "eoe"}}})}})
         + "\n";
}

} // namespace eoe::net
