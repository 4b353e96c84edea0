#include "actors/trace.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <stdexcept>

namespace eoe::actors {

namespace {

constexpr std::string_view kind_names[] = {"send", "receive", "compute", "activate", "abstain",
                                           "merge"};

} // namespace

std::string_view to_string(trace_kind k) noexcept {
  return kind_names[static_cast<size_t>(k)];
}

std::optional<trace_kind> trace_kind_from(std::string_view s) noexcept {
  for (size_t i = 0; i < std::size(kind_names); ++i)
    if (kind_names[i] == s)
      return static_cast<trace_kind>(i);
  return std::nullopt;
}

namespace {

/// JSON text of a string, quoted: what must be escaped is, UTF-8 passes through.
void append_string(std::string& out, std::string_view s) {
  // A byte past ASCII may begin a sequence that is not UTF-8 (a node name is any string): the
  // line must still be JSON that eoe-trace reads, so nlohmann checks it and writes U+FFFD for
  // such bytes. Names are ASCII in practice, so the hand-written path below stays the common one.
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) {
      out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    }
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

template <class T>
void append_number(std::string& out, T x) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, r.ptr);
}

template <class T>
void append_field(std::string& out, std::string_view key, T x) {
  out += ",\"";
  out += key;
  out += "\":";
  append_number(out, x);
}

} // namespace

std::string to_json_line(const trace_event& e) {
  // Written by hand: a traced request records hundreds of events, and this is most of what
  // each one costs.
  std::string out;
  out.reserve(192);
  out += "{\"trace\":";
  append_number(out, e.trace);
  append_field(out, "req", e.request);
  out += ",\"kind\":";
  append_string(out, to_string(e.kind));
  out += ",\"name\":";
  append_string(out, e.name);
  out += ",\"node\":";
  append_string(out, e.node);
  out += ",\"actor\":";
  append_string(out, e.actor);
  if (!e.peer.empty()) {
    out += ",\"peer\":";
    append_string(out, e.peer);
  }
  if (e.msg != 0)
    append_field(out, "msg", e.msg);
  if (e.msg != 0 || e.hop != 0) // (a line may give a hop and no msg: it reads back the same)
    append_field(out, "hop", static_cast<unsigned>(e.hop));
  if (e.bytes != 0)
    append_field(out, "bytes", e.bytes);
  if (e.layer >= 0)
    append_field(out, "layer", e.layer);
  if (e.expert >= 0)
    append_field(out, "expert", e.expert);
  if (std::isfinite(e.score))
    append_field(out, "score", e.score);
  if (e.rows != 0)
    append_field(out, "rows", e.rows);
  append_field(out, "t", e.t_ns);
  if (e.dur_ns != 0)
    append_field(out, "dur", e.dur_ns);
  out += '}';
  return out;
}

namespace {

/// Timestamps and durations a line may hold, in ns: within 126 years of 1970 either way, so
/// that the difference of any two (a latency, a span of the trace) fits an int64.
constexpr std::int64_t max_abs_ns = 4'000'000'000'000'000'000;

/// A value of the line for an error message: ASCII only (nlohmann escapes every other
/// character), and cut past 80 characters with the length said; an array or an object is
/// named, not written out (it may be as long as the line).
std::string value_text(const nlohmann::json& v) {
  if (v.is_array() || v.is_object())
    return v.is_array() ? "an array" : "an object";
  auto text = v.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (text.size() > 80)
    text = text.substr(0, 80) + "... (" + std::to_string(text.size()) + " characters)";
  return text;
}

const nlohmann::json* field(const nlohmann::json& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required)
      throw std::invalid_argument(std::string("missing field \"") + key + "\"");
    return nullptr;
  }
  return &*it;
}

template <class T>
T integer(const nlohmann::json& j, const char* key, bool required, T fallback = 0) {
  const auto* v = field(j, key, required);
  if (!v)
    return fallback;
  if (!v->is_number_integer())
    throw std::invalid_argument(std::string("field \"") + key + "\" must be an integer, not "
                                + value_text(*v));
  if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      throw std::invalid_argument(std::string("field \"") + key + "\" is out of range: "
                                  + value_text(*v));
    return static_cast<T>(u);
  }
  const auto s = v->get<std::int64_t>();
  if (s < static_cast<std::int64_t>(std::numeric_limits<T>::min())
      || (s > 0 && static_cast<std::uint64_t>(s) > static_cast<std::uint64_t>(std::numeric_limits<T>::max())))
    throw std::invalid_argument(std::string("field \"") + key + "\" is out of range: "
                                + value_text(*v));
  return static_cast<T>(s);
}

/// A time or a duration (ns): an integer within max_abs_ns of 0.
std::int64_t nanoseconds(const nlohmann::json& j, const char* key, bool required) {
  const auto t = integer<std::int64_t>(j, key, required);
  if (t < -max_abs_ns || t > max_abs_ns)
    throw std::invalid_argument(std::string("field \"") + key + "\" is out of range: "
                                + std::to_string(t) + " (at most 4e18 ns from 1970)");
  return t;
}

/// A layer or an expert: absent (-1) or an index.
std::int32_t index(const nlohmann::json& j, const char* key) {
  const auto i = integer<std::int32_t>(j, key, false, -1);
  if (i < 0 && j.contains(key))
    throw std::invalid_argument(std::string("field \"") + key + "\" is negative");
  return i;
}

std::string text(const nlohmann::json& j, const char* key, bool required) {
  const auto* v = field(j, key, required);
  if (!v)
    return {};
  if (!v->is_string())
    throw std::invalid_argument(std::string("field \"") + key + "\" must be a string, not "
                                + value_text(*v));
  return v->get<std::string>();
}

/// The parser's reason without the text it quotes: nlohmann's message ends in "; last read:
/// '...'", the raw input (any bytes, any length), which an error must not echo.
std::string reason(const nlohmann::json::exception& e) {
  std::string what = e.what();
  if (const auto at = what.find("; last read: "); at != std::string::npos)
    what.resize(at);
  // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
  if (const auto at = what.find(": syntax error"); at != std::string::npos)
    return what.substr(at + 2);
  return what.substr(what.find(']') + 2);
}

} // namespace

trace_event parse_trace_line(std::string_view line) {
  // nlohmann reads a NUL byte as the end of the text: what follows one would be dropped unread.
  if (const auto nul = line.find('\0'); nul != std::string_view::npos)
    throw std::invalid_argument("not JSON: byte " + std::to_string(nul + 1) + ": a NUL byte");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument("not JSON: byte " + std::to_string(e.byte) + ": " + reason(e));
  } catch (const nlohmann::json::exception&) {
    // out_of_range 406, the only other one parse() throws
    throw std::invalid_argument("not JSON: a number too large for a double");
  }
  if (!j.is_object())
    throw std::invalid_argument("not a JSON object but " + std::string(j.type_name()));
  trace_event e;
  e.trace = integer<std::uint64_t>(j, "trace", true);
  e.request = integer<std::uint64_t>(j, "req", true);
  const auto kind = text(j, "kind", true);
  const auto k = trace_kind_from(kind);
  if (!k)
    throw std::invalid_argument("field \"kind\": unknown kind " + value_text(nlohmann::json(kind)));
  e.kind = *k;
  e.name = text(j, "name", true);
  e.node = text(j, "node", true);
  e.actor = text(j, "actor", true);
  e.peer = text(j, "peer", false);
  e.msg = integer<std::uint64_t>(j, "msg", false);
  e.hop = integer<std::uint8_t>(j, "hop", false);
  e.bytes = integer<std::uint64_t>(j, "bytes", false);
  e.layer = index(j, "layer");
  e.expert = index(j, "expert");
  if (const auto* s = field(j, "score", false)) {
    if (!s->is_number())
      throw std::invalid_argument("field \"score\" must be a number, not " + value_text(*s));
    // A double past a float's range has no float value (the conversion is undefined).
    const auto d = s->get<double>();
    if (!(std::fabs(d) <= std::numeric_limits<float>::max()))
      throw std::invalid_argument("field \"score\" is out of range of a float: " + value_text(*s));
    e.score = static_cast<float>(d);
  }
  e.rows = integer<std::uint32_t>(j, "rows", false);
  e.t_ns = nanoseconds(j, "t", true);
  e.dur_ns = nanoseconds(j, "dur", false);
  if (e.dur_ns < 0)
    throw std::invalid_argument("field \"dur\" is negative");
  if ((e.kind == trace_kind::send || e.kind == trace_kind::receive) && e.msg == 0)
    throw std::invalid_argument("a " + kind + " needs a \"msg\" id");
  return e;
}

namespace tracing {

namespace {

std::atomic<std::shared_ptr<trace_sink>>& installed() {
  static std::atomic<std::shared_ptr<trace_sink>> s;
  return s;
}

std::int64_t skew_ns() {
  static const std::int64_t skew = [] {
    const char* s = std::getenv("EOE_CLOCK_SKEW_MS");
    return s ? std::strtoll(s, nullptr, 10) * 1'000'000 : 0;
  }();
  return skew;
}

struct offset_table {
  std::mutex mu;
  std::map<std::string, std::int64_t, std::less<>> by_node;
};

offset_table& offsets() {
  static offset_table t;
  return t;
}

} // namespace

void set_clock_offset(const std::string& node, std::int64_t offset_ns) {
  auto& t = offsets();
  std::lock_guard lock{t.mu};
  t.by_node[node] = offset_ns;
}

std::int64_t clock_offset(std::string_view node) {
  auto& t = offsets();
  std::lock_guard lock{t.mu};
  auto i = t.by_node.find(node);
  return i == t.by_node.end() ? 0 : i->second;
}

void install(std::shared_ptr<trace_sink> sink) {
  installed().store(std::move(sink));
}

std::shared_ptr<trace_sink> sink() {
  return installed().load();
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
           .count()
         + skew_ns();
}

std::uint64_t next_message_id() {
  // A random process salt in the high bits, a counter in the low ones.
  static const std::uint64_t salt = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32 | rd()) & ~std::uint64_t{0xffffffffff};
  }();
  static std::atomic<std::uint64_t> counter{0};
  return salt | ((counter.fetch_add(1, std::memory_order_relaxed) + 1) & 0xffffffffff);
}

bool sampled(std::uint64_t request, double fraction) noexcept {
  if (fraction <= 0)
    return false;
  if (fraction >= 1)
    return true;
  std::uint64_t z = request + 0x9e3779b97f4a7c15ULL; // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53 < fraction;
}

std::int64_t estimate_offset(const clock_sample* samples, size_t n) {
  if (n == 0)
    throw std::invalid_argument("estimate_offset: no samples");
  const clock_sample* best = samples;
  for (size_t i = 1; i < n; ++i)
    if (samples[i].t2 - samples[i].t0 < best->t2 - best->t0)
      best = samples + i;
  return best->t1 - (best->t0 + (best->t2 - best->t0) / 2);
}

} // namespace tracing

trace_event trace_scope::event(trace_kind kind, std::string_view name, std::int32_t layer,
                               std::int32_t expert) const {
  trace_event e;
  e.trace = trace;
  e.request = request;
  e.kind = kind;
  e.name = name;
  e.node = node;
  e.actor = actor;
  e.layer = layer;
  e.expert = expert;
  return e;
}

void trace_scope::message(trace_kind kind, std::string_view name, std::string_view peer,
                          std::uint64_t msg, std::uint8_t hop, std::uint64_t bytes,
                          std::int32_t layer, std::int32_t expert, std::int64_t t,
                          std::int64_t dur) const {
  if (!sink)
    return;
  auto e = event(kind, name, layer, expert);
  e.peer = peer;
  e.msg = msg;
  e.hop = hop;
  e.bytes = bytes;
  e.t_ns = t;
  e.dur_ns = dur;
  sink->record(std::move(e));
}

void trace_scope::step(trace_kind kind, std::string_view name, std::int32_t layer,
                       std::int32_t expert, std::int64_t t0, std::int64_t t1, std::uint32_t rows,
                       float score) const {
  if (!sink)
    return;
  auto e = event(kind, name, layer, expert);
  e.rows = rows;
  e.score = score;
  e.t_ns = t0;
  e.dur_ns = t1 - t0;
  sink->record(std::move(e));
}

} // namespace eoe::actors
