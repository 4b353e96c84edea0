#include "net/infer_json.hpp"

#include "actors/wire.hpp"
#include "experts/base/utf8.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>

namespace eoe::net {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument(what);
}

/// A value from the body as an error quotes it: its JSON text, cut where it is long.
std::string quoted(const json& v) {
  return experts::quote_input(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

/// Each byte's base64 value; -1 for a byte that is not a base64 digit.
constexpr std::array<std::int8_t, 256> base64_values = [] {
  std::array<std::int8_t, 256> t{};
  t.fill(-1);
  for (int i = 0; i < 26; ++i) {
    t['A' + i] = static_cast<std::int8_t>(i);
    t['a' + i] = static_cast<std::int8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i)
    t['0' + i] = static_cast<std::int8_t>(52 + i);
  t['+'] = 62;
  t['/'] = 63;
  return t;
}();

size_t after_space(std::string_view text, size_t i) {
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
    ++i;
  return i;
}

/// Where the text of the top-level object's "tokens_b64" string lies in `body`, when it is
/// the only such key and a plain string (no escape): nlohmann's lexer copies a string byte by
/// byte, which made a 16 KB payload the largest cost of a gateway request, so the body is
/// parsed without it and the text is decoded where it lies. Nothing when the body is anything
/// else (it is then parsed whole, as before).
std::optional<std::pair<size_t, size_t>> plain_b64_text(std::string_view body) {
  constexpr std::string_view key = "tokens_b64";
  std::optional<std::pair<size_t, size_t>> found;
  int depth = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == '"') {
      const auto close = body.find('"', i + 1);
      if (close == std::string_view::npos)
        return std::nullopt;
      const auto text = body.substr(i + 1, close - i - 1);
      if (text.find('\\') != std::string_view::npos)
        return std::nullopt; // an escape (it could also end the string later, or spell the key)
      const auto next = after_space(body, close + 1);
      if (depth == 1 && text == key && next < body.size() && body[next] == ':') {
        const auto value = after_space(body, next + 1);
        if (found || value >= body.size() || body[value] != '"')
          return std::nullopt; // twice, or not a string
        const auto end = body.find('"', value + 1);
        if (end == std::string_view::npos
            || body.substr(value + 1, end - value - 1).find('\\') != std::string_view::npos)
          return std::nullopt;
        found = std::pair{value + 1, end};
        i = end;
        continue;
      }
      i = close;
    }
  }
  return found;
}

} // namespace

std::string decode_base64(std::string_view text) {
  if (text.size() % 4 != 0)
    bad("base64 of " + std::to_string(text.size()) + " characters (a multiple of 4 is needed)");
  const size_t pad = text.empty() ? 0 : text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  std::string out(text.size() / 4 * 3 - pad, '\0');
  const auto* in = reinterpret_cast<const unsigned char*>(text.data());
  auto* o = out.data();
  const auto not_base64 = [&](size_t at) {
    const auto c = static_cast<unsigned char>(text[at]);
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", c);
    bad("base64: character " + std::to_string(at)
        + (c >= 0x20 && c < 0x7f ? " ('" + std::string(1, text[at]) + "')" : " (byte " + std::string(hex) + ")")
        + " is not base64");
  };
  const auto quad = [&](size_t i, int digits) { // the value of text[i, i + digits), or fails
    std::uint32_t n = 0;
    for (int j = 0; j < 4; ++j) {
      const int v = j < digits ? base64_values[in[i + j]] : 0;
      if (v < 0)
        not_base64(i + static_cast<size_t>(j));
      n = n << 6 | static_cast<std::uint32_t>(v);
    }
    return n;
  };
  const size_t full = pad ? text.size() - 4 : text.size();
  for (size_t i = 0; i < full; i += 4, o += 3) {
    // One lookup per digit; any byte that is not a digit makes the OR negative.
    const int a = base64_values[in[i]], b = base64_values[in[i + 1]],
              c = base64_values[in[i + 2]], d = base64_values[in[i + 3]];
    if ((a | b | c | d) < 0)
      quad(i, 4); // names the byte (an '=' before the end included)
    const auto n = static_cast<std::uint32_t>(a << 18 | b << 12 | c << 6 | d);
    o[0] = static_cast<char>(n >> 16);
    o[1] = static_cast<char>(n >> 8 & 0xff);
    o[2] = static_cast<char>(n & 0xff);
  }
  if (pad) {
    const auto n = quad(full, static_cast<int>(4 - pad));
    o[0] = static_cast<char>(n >> 16);
    if (pad == 1)
      o[1] = static_cast<char>(n >> 8 & 0xff);
  }
  return out;
}

std::string encode_base64(std::string_view bytes) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t n = std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size())
      n |= std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size())
      n |= static_cast<unsigned char>(bytes[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[n & 63] : '=';
  }
  return out;
}

void check_json_text(std::string_view body) {
  // Said here rather than by the parser, whose message would quote the bad bytes.
  experts::require_utf8("body", body);
  if (const auto nul = body.find('\0'); nul != std::string_view::npos)
    bad("body byte " + std::to_string(nul + 1) + ": a NUL byte (JSON text has none; in a string "
        "it is written \\u0000)");
}

namespace {

/// The request a parsed body asks; `b64_bytes`, where given, are the decoded "tokens_b64"
/// (whose text was left out of `j`).
actors::infer_request request_of(const json& j, const infer_body_limits& limits,
                                 std::string* b64_bytes) {
  if (!j.is_object())
    bad(std::string("the body must be a JSON object, not ") + j.type_name());
  static const char* known[] = {"tokens", "tokens_b64", "rows", "ids", "deadline_ms", "trace"};
  for (auto& [key, value] : j.items()) {
    bool ok = false;
    for (auto* k : known)
      ok = ok || key == k;
    if (!ok)
      bad("unknown field \"" + experts::quote_input(key) + "\" (known: tokens, tokens_b64, rows, ids, deadline_ms, trace)");
  }
  const auto width = limits.input_width;
  actors::infer_request req;
  req.deadline_ms = limits.default_deadline_ms;
  std::vector<float> values;
  std::uint32_t rows = 0;
  const bool has_tokens = j.contains("tokens"), has_b64 = j.contains("tokens_b64");
  if (has_tokens == has_b64)
    bad("give exactly one of \"tokens\" (rows of numbers) and \"tokens_b64\" (base64 float32)");
  if (has_tokens) {
    const auto& t = j["tokens"];
    if (!t.is_array() || t.empty())
      bad("\"tokens\" must be a non-empty array of rows");
    if (t.size() > limits.max_tokens)
      bad("\"tokens\" has " + std::to_string(t.size()) + " rows, at most "
          + std::to_string(limits.max_tokens) + " are accepted");
    rows = static_cast<std::uint32_t>(t.size());
    values.reserve(size_t{rows} * width);
    for (size_t r = 0; r < t.size(); ++r) {
      const auto& row = t[r];
      if (!row.is_array() || row.size() != width)
        bad("tokens[" + std::to_string(r) + "] must be an array of " + std::to_string(width)
            + " numbers (the model's input width)"
            + (row.is_array() ? ", it has " + std::to_string(row.size()) : ""));
      for (size_t c = 0; c < row.size(); ++c) {
        if (!row[c].is_number())
          bad("tokens[" + std::to_string(r) + "][" + std::to_string(c) + "] is not a number: "
              + quoted(row[c]));
        const double x = row[c].get<double>();
        if (!std::isfinite(x) || std::abs(x) > 3.0e38)
          bad("tokens[" + std::to_string(r) + "][" + std::to_string(c)
              + "] is not a finite float32: " + quoted(row[c]));
        values.push_back(static_cast<float>(x));
      }
    }
  } else {
    const auto& t = j["tokens_b64"];
    if (!t.is_string())
      bad("\"tokens_b64\" must be a base64 string");
    if (!j.contains("rows") || !j["rows"].is_number_unsigned())
      bad("\"tokens_b64\" needs \"rows\", a positive integer");
    const auto r = j["rows"].get<std::uint64_t>();
    if (r == 0 || r > limits.max_tokens)
      bad("\"rows\" must be in 1.." + std::to_string(limits.max_tokens) + ", got "
          + std::to_string(r));
    rows = static_cast<std::uint32_t>(r);
    std::string bytes;
    try {
      bytes = b64_bytes ? std::move(*b64_bytes) : decode_base64(t.get<std::string>());
    } catch (const std::invalid_argument& e) {
      bad(std::string("\"tokens_b64\": ") + e.what());
    }
    if (bytes.size() != size_t{rows} * width * 4)
      bad("\"tokens_b64\" holds " + std::to_string(bytes.size()) + " bytes; " + std::to_string(rows)
          + " rows of " + std::to_string(width) + " float32 need " + std::to_string(size_t{rows} * width * 4));
    values.resize(size_t{rows} * width);
    std::memcpy(values.data(), bytes.data(), bytes.size());
    for (size_t i = 0; i < values.size(); ++i)
      if (!std::isfinite(values[i]))
        bad("\"tokens_b64\": value " + std::to_string(i) + " (row " + std::to_string(i / width)
            + ") is not finite");
  }
  if (j.contains("ids")) {
    const auto& ids = j["ids"];
    if (!ids.is_array() || ids.size() != rows)
      bad("\"ids\" must be an array of " + std::to_string(rows) + " unsigned integers (one per token)");
    std::vector<std::uint64_t> v;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!ids[i].is_number_unsigned())
        bad("ids[" + std::to_string(i) + "] is not an unsigned integer: " + quoted(ids[i]));
      v.push_back(ids[i].get<std::uint64_t>());
    }
    req.ids = actors::pack(v);
  }
  if (j.contains("deadline_ms")) {
    const auto& d = j["deadline_ms"];
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() < 1 || d.get<std::uint64_t>() > 3'600'000)
      bad("\"deadline_ms\" must be an integer in 1..3600000, got " + quoted(d));
    req.deadline_ms = d.get<std::uint32_t>();
  }
  if (j.contains("trace")) {
    if (!j["trace"].is_boolean())
      bad("\"trace\" must be true or false, got " + quoted(j["trace"]));
    req.trace = j["trace"].get<bool>();
  }
  req.tokens.rows = rows;
  req.tokens.cols = width;
  req.tokens.bytes.assign(reinterpret_cast<const char*>(values.data()), values.size() * 4);
  return req;
}

} // namespace

actors::infer_request parse_infer_body(std::string_view body, const infer_body_limits& limits) {
  check_json_text(body);
  // The fast way when it applies and succeeds; anything it finds wrong is found again, and
  // said exactly as before, by parsing the whole body.
  if (const auto cut = plain_b64_text(body)) {
    std::string rest;
    rest.reserve(body.size() - (cut->second - cut->first));
    rest.append(body.substr(0, cut->first)).append(body.substr(cut->second));
    const auto j = json::parse(rest, nullptr, false);
    std::string bytes;
    bool decoded = false;
    try {
      bytes = decode_base64(body.substr(cut->first, cut->second - cut->first));
      decoded = true;
    } catch (const std::invalid_argument&) {
    }
    if (!j.is_discarded() && decoded)
      return request_of(j, limits, &bytes);
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) { // a syntax error, or a number past double (found by fuzzing)
    bad("the body is not JSON: " + experts::quote_input(e.what(), 240));
  }
  return request_of(j, limits, nullptr);
}

std::string infer_result_json(const actors::infer_result& r) {
  const auto d = actors::decode(r, actors::expert_numbering::stable_ids);
  json out;
  out["request"] = r.request;
  out["epoch"] = r.epoch;
  if (r.trace_id != 0)
    out["trace_id"] = std::to_string(r.trace_id);
  auto rows = json::array();
  for (Eigen::Index i = 0; i < d.output.rows(); ++i) {
    auto row = json::array();
    for (Eigen::Index c = 0; c < d.output.cols(); ++c)
      row.push_back(d.output(i, c));
    rows.push_back(std::move(row));
  }
  out["output"] = std::move(rows);
  // A layer is named as the topology names it (its config layer); a recurrent layer's steps
  // share it, and say which step they are.
  std::map<std::uint32_t, std::uint32_t> runs, run;
  for (const auto& l : r.layers)
    ++runs[l.layer];
  auto layers = json::array();
  for (size_t l = 0; l < d.layers.size(); ++l) {
    const auto& a = d.layers[l].active;
    auto tokens = json::array();
    for (size_t t = 0; t < a.tokens(); ++t) {
      auto e = a.experts_of(t);
      auto g = a.gates_of(t);
      tokens.push_back({{"experts", std::vector<std::int32_t>(e.begin(), e.end())},
                        {"gates", std::vector<float>(g.begin(), g.end())}});
    }
    const auto config_layer = r.layers[l].layer;
    json layer{{"layer", config_layer}};
    if (runs[config_layer] > 1)
      layer["step"] = ++run[config_layer];
    layer["tokens"] = std::move(tokens);
    layers.push_back(std::move(layer));
  }
  out["layers"] = std::move(layers);
  return out.dump();
}

} // namespace eoe::net
