// Tracing: the event format and its errors, sampling, clock offsets; and a traced request
// through a 3-node cluster (every layer kind of the mesh test model): every send has exactly
// one receive, the messages per edge and their bytes are what the activation record implies,
// decisions match the record, the Perfetto JSON parses with both ends of every flow on a
// slice, the HTML page is well-formed and names every actor, the critical path is unbroken.

#include "actors/trace.hpp"
#include "flows_page.hpp"
#include "follow.hpp"
#include "local_cluster_fixture.hpp"
#include "experts/base/utf8.hpp"
#include "mesh_model.hpp"
#include "net/trace_sink.hpp"
#include "perfetto_json.hpp"
#include "scratch_dir.hpp"
#include "trace_summary.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::trace_tool;

namespace {

trace_event sample_event() {
  trace_event e;
  e.trace = 0xfedcba9876543210ULL;
  e.request = 42;
  e.kind = trace_kind::send;
  e.name = "contrib";
  e.node = "n\"2";
  e.actor = "expert 1.3";
  e.peer = "relay n3";
  e.msg = 77;
  e.hop = 1;
  e.bytes = 4096;
  e.layer = 2;
  e.expert = 3;
  e.rows = 5;
  e.score = 0.25f;
  e.t_ns = 1'700'000'000'123'456'789LL;
  e.dur_ns = 1500;
  return e;
}

std::string parse_error(const std::string& line) {
  try {
    (void) parse_trace_line(line);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

/// A minimal XML well-formedness check: every tag closed in order, attributes quoted,
/// entities known. Returns "" when well-formed, else what is wrong and where.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> open;
  size_t i = 0;
  while ((i = s.find_first_of("<&", i)) != std::string::npos) {
    if (s[i] == '&') {
      const auto end = s.find(';', i);
      const auto ent = s.substr(i, end == std::string::npos ? 8 : end - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&#39;")
        return "unknown entity " + ent + " at " + std::to_string(i);
      ++i;
      continue;
    }
    if (s.compare(i, 9, "<!DOCTYPE") == 0) {
      i = s.find('>', i);
      continue;
    }
    const auto end = s.find('>', i);
    if (end == std::string::npos)
      return "unclosed tag at " + std::to_string(i);
    std::string tag = s.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty())
      return "empty tag";
    // Attribute values are quoted, no raw '<' inside a tag.
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0 || tag.find('<') != std::string::npos)
      return "bad attributes in <" + tag + ">";
    if (tag[0] == '/') {
      const auto name = tag.substr(1);
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes <" + (open.empty() ? "nothing" : open.back()) + ">";
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
  }
  return open.empty() ? "" : "<" + open.back() + "> never closed";
}

} // namespace

TEST_CASE("trace events round-trip through JSON lines", "[trace]") {
  const auto e = sample_event();
  const auto line = to_json_line(e);
  CHECK(line.find('\n') == std::string::npos);
  CHECK(parse_trace_line(line) == e);
  auto step = e;
  step.kind = trace_kind::compute;
  step.msg = 0;
  step.hop = 0;
  step.peer.clear();
  step.score = std::nanf("");
  const auto back = parse_trace_line(to_json_line(step));
  CHECK(std::isnan(back.score));
  auto copy = back;
  copy.score = step.score = 0;
  CHECK(copy == step);
}

TEST_CASE("a malformed trace line gets an error naming the field", "[trace]") {
  CHECK(parse_error("{\"trace\":1") == "not JSON: byte 11: syntax error while parsing object - "
                                        "unexpected end of input; expected '}'");
  CHECK(parse_error("[1,2]") == "not a JSON object but array");
  CHECK(parse_error(R"({"req":1,"kind":"send","name":"x","node":"n","actor":"a","t":1})")
        == "missing field \"trace\"");
  CHECK(parse_error(R"({"trace":1,"req":1,"kind":"jump","name":"x","node":"n","actor":"a","t":1})")
        == "field \"kind\": unknown kind \"jump\"");
  CHECK(parse_error(R"({"trace":1,"req":"7","kind":"merge","name":"x","node":"n","actor":"a","t":1})")
        == "field \"req\" must be an integer, not \"7\"");
  CHECK(parse_error(R"({"trace":1,"req":1,"kind":"merge","name":"x","node":"n","actor":"a","t":1,"hop":300})")
        == "field \"hop\" is out of range: 300");
  CHECK(parse_error(R"({"trace":1,"req":1,"kind":"send","name":"x","node":"n","actor":"a","t":1})")
        == "a send needs a \"msg\" id");
  CHECK(parse_error(R"({"trace":1,"req":1,"kind":"merge","name":"x","node":"n","actor":"a","t":1,"dur":-5})")
        == "field \"dur\" is negative");
  CHECK(parse_error(R"({"trace":1,"req":1,"kind":"merge","name":4,"node":"n","actor":"a","t":1})")
        == "field \"name\" must be a string, not 4");
  // In a file, the error names the file and the line; what came before is not lost.
  trace_log log;
  const auto good = to_json_line(sample_event());
  try {
    parse_into(log, good + "\n\n" + good + "\n{\"trace\":1}\n", "n1.trace.jsonl");
    FAIL("no error");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "n1.trace.jsonl:4: missing field \"req\"");
  }
  CHECK(log.events.size() == 2);
}

namespace {

/// A line of every required field around `extra` (",\"k\":v" pairs) and the node name given
/// as JSON text.
std::string line_with(const std::string& node_json, const std::string& extra = "") {
  return R"({"trace":1,"req":1,"kind":"merge","name":"mix","node":)" + node_json
         + R"(,"actor":"expert 0.1","t":1)" + extra + "}";
}

/// The error of the second line of a file whose first line is good.
std::string file_error(const std::string& bad_line) {
  trace_log log;
  try {
    parse_into(log, line_with("\"n1\"") + "\n" + bad_line + "\n", "n1.trace.jsonl");
  } catch (const std::runtime_error& e) {
    CHECK(log.events.size() == 1);
    return e.what();
  }
  return "(no error)";
}

} // namespace

TEST_CASE("a trace line with bytes that are not UTF-8, bad escapes or huge values: the file, the "
          "line and the byte", "[trace]") {
  // Raw bytes: the byte is named, counted from 1 in the line (the node's value starts at 56).
  CHECK(file_error(line_with("\"n\xff\"")) == "n1.trace.jsonl:2: line byte 57: 0xFF is not UTF-8 "
                                              "(never appears in UTF-8)");
  CHECK(file_error(line_with("\"\xc0\xaf\"")) == "n1.trace.jsonl:2: line byte 56: 0xC0 is not "
                                                 "UTF-8 (an overlong form (never appears in UTF-8))");
  CHECK(file_error(line_with("\"\xed\xa0\x80\""))
        == "n1.trace.jsonl:2: line byte 56: 0xED is not UTF-8 (a UTF-16 surrogate "
           "(U+D800..U+DFFF))");
  CHECK(file_error(line_with("\"n\xe2\x82\"")) == "n1.trace.jsonl:2: line byte 57: 0xE2 is not "
                                                  "UTF-8 (begins a multi-byte sequence that breaks off)");
  // Escapes and bytes that are UTF-8 but not JSON: nlohmann's reason, never the text it read.
  CHECK(file_error(line_with(R"("\ud800")"))
        == "n1.trace.jsonl:2: not JSON: byte 62: syntax error while parsing value - invalid "
           "string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF");
  CHECK(file_error(line_with(R"("\udc00x")"))
        == "n1.trace.jsonl:2: not JSON: byte 61: syntax error while parsing value - invalid "
           "string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF");
  // A NUL byte, in a string or after the object: nlohmann would read the end of the text there
  // (and take a line cut short).
  CHECK(file_error(line_with(std::string("\"n\0\"", 4)))
        == "n1.trace.jsonl:2: not JSON: byte 57: a NUL byte");
  CHECK(file_error(line_with("\"n1\"") + std::string("\0garbage", 8))
        == "n1.trace.jsonl:2: not JSON: byte 87: a NUL byte");
  // Huge values: cut, the length said; an array or an object named, not written out.
  const std::string huge(100000, 'x');
  CHECK(file_error(line_with("\"n1\"", ",\"req\":\"" + huge + "\""))
        == "n1.trace.jsonl:2: field \"req\" must be an integer, not \"" + std::string(79, 'x')
             + "... (100002 characters)");
  CHECK(file_error(line_with("[" + std::string(50000, '[') + std::string(50001, ']')))
        == "n1.trace.jsonl:2: field \"node\" must be a string, not an array");
  CHECK(file_error(line_with(R"("n1")", R"(,"hop":"\u001b[2J\u0000")"))
        == "n1.trace.jsonl:2: field \"hop\" must be an integer, not \"\\u001b[2J\\u0000\"");
  CHECK(file_error(R"({"trace":1,"req":1,"kind":")" + huge + R"(","name":"x","node":"n","actor":"a","t":1})")
        == "n1.trace.jsonl:2: field \"kind\": unknown kind \"" + std::string(79, 'x')
             + "... (100002 characters)");
  CHECK(file_error(line_with("\"n1\"", ",\"bytes\":1e999"))
        == "n1.trace.jsonl:2: not JSON: a number too large for a double");
  CHECK(file_error(line_with("\"n1\"", ",\"bytes\":99999999999999999999"))
        == "n1.trace.jsonl:2: field \"bytes\" must be an integer, not 1e+20");
  CHECK(file_error(line_with("\"n1\"", ",\"score\":1e300"))
        == "n1.trace.jsonl:2: field \"score\" is out of range of a float: 1e+300");
  CHECK(file_error(line_with("\"n1\"", ",\"dur\":9000000000000000000"))
        == "n1.trace.jsonl:2: field \"dur\" is out of range: 9000000000000000000 (at most 4e18 ns "
           "from 1970)");
  CHECK(file_error(line_with("\"n1\"", ",\"layer\":-7"))
        == "n1.trace.jsonl:2: field \"layer\" is negative");
  // A path that is not UTF-8 is named escaped.
  trace_log log;
  CHECK_THROWS_WITH(parse_into(log, "{", "n\xff.jsonl"),
                    "n\\xFF.jsonl:1: not JSON: byte 2: syntax error while parsing object key - "
                    "unexpected end of input; expected string literal");
}

TEST_CASE("names with control characters, NUL or odd bytes: every output is written, and safe",
          "[trace]") {
  // Escapes JSON allows: NUL, ESC (a terminal's control sequences), quotes, '<' and '&'.
  const std::string name_json = R"("ffn\u0000\u001b[2J<b>&\"x\"")";
  const std::string name = std::string("ffn\0\x1b[2J<b>&\"x\"", 15);
  trace_log log;
  const std::string text =
    R"({"trace":7,"req":1,"kind":"send","name":)" + name_json
    + R"(,"node":"n1","actor":"expert 2147483647.1","peer":"composer","msg":5,"layer":2147483647,"bytes":10,"t":-4000000000000000000})"
    + "\n"
    + R"({"trace":7,"req":1,"kind":"receive","name":)" + name_json
    + R"(,"node":"n2","actor":"composer","peer":"expert 2147483647.1","msg":5,"layer":2147483647,"t":4000000000000000000})"
    + "\n"
    + R"({"trace":7,"req":1,"kind":"activate","name":"decide","node":"n1","actor":"expert 99999999999.1","layer":3,"expert":1,"rows":4294967295,"score":3.4e38,"t":5})"
    + "\n";
  parse_into(log, text, "odd.trace.jsonl");
  REQUIRE(log.events.size() == 3);
  CHECK(log.events[0].name == name);
  // Each event writes a line that reads back as itself (score aside: NaN equals nothing).
  for (auto& e : log.events) {
    auto back = parse_trace_line(to_json_line(e));
    CHECK(std::isnan(back.score) == std::isnan(e.score));
    auto want = e;
    back.score = want.score = 0;
    CHECK(back == want);
  }

  std::ostringstream summary;
  print_summary(summary, log, 0);
  CHECK_THAT(summary.str(), Catch::Contains("ffn\\x00\\x1B[2J<b>&\"x\""));
  CHECK_FALSE(experts::find_invalid_utf8(summary.str()));
  for (char c : summary.str())
    CHECK((static_cast<unsigned char>(c) >= 0x20 || c == '\n'));
  // Wire time across the whole range allowed: 8e18 ns, no overflow.
  CHECK_THAT(summary.str(), Catch::Contains("8000000000000000.0 /"));

  std::ostringstream perfetto;
  write_perfetto(perfetto, log);
  const auto doc = nlohmann::json::parse(perfetto.str());
  bool found = false;
  for (auto& ev : doc["traceEvents"])
    found = found || ev.value("name", "") == "send " + name + " -> composer";
  CHECK(found);

  std::ostringstream html;
  write_flows_page(html, log, 0);
  CHECK(xml_problem(html.str()) == "");
  CHECK_THAT(html.str(), Catch::Contains("ffn  [2J&lt;b&gt;&amp;&quot;x&quot;"));
  CHECK(html.str().find('\x1b') == std::string::npos);
  CHECK(html.str().find('\0') == std::string::npos);

  // Found by fuzzing: a line with a hop and no msg read back without its hop.
  const auto merge = parse_trace_line(
    R"({"trace":1,"req":1,"kind":"merge","name":"mix","node":"n","actor":"a","t":1,"hop":1})");
  CHECK(parse_trace_line(to_json_line(merge)).hop == 1);

  // eoe-trace follow's line: the same names, printable.
  CHECK(one_line(log.events[0]).find("send ffn\\x00\\x1B[2J<b>&\"x\" -> composer") != std::string::npos);
}

TEST_CASE("a name that is not UTF-8 still writes a line eoe-trace reads", "[trace]") {
  auto e = sample_event();
  e.node = "n\xff\xc0\xaf";
  e.actor = "caf\xc3\xa9 \x01";
  const auto line = to_json_line(e);
  CHECK_FALSE(experts::find_invalid_utf8(line));
  const auto back = parse_trace_line(line);
  CHECK(back.node == "n\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); // U+FFFD for each bad byte
  CHECK(back.actor == e.actor);
  // Nor do the outputs throw on such an event (one not read from a file).
  trace_log log;
  log.events.push_back(e);
  std::ostringstream perfetto, html, summary;
  CHECK_NOTHROW(write_perfetto(perfetto, log));
  CHECK_NOTHROW(nlohmann::json::parse(perfetto.str()));
  CHECK_NOTHROW(write_flows_page(html, log, 0));
  CHECK_FALSE(experts::find_invalid_utf8(html.str()));
  CHECK_NOTHROW(print_summary(summary, log, 0));
  CHECK(printable(e.node) == "n\\xFF\\xC0\\xAF");
  CHECK(printable(std::string(100, 'a'), 10) == "aaaaaaaaaa... (100 bytes)");
}

TEST_CASE("the critical path of a long request is found in n log n", "[trace]") {
  // A chain of 20000 hops between two actors: quadratic, this took minutes.
  trace_log log;
  const int hops = 20000;
  for (int i = 0; i < hops; ++i) {
    trace_event s;
    s.trace = 1;
    s.request = 1;
    s.kind = trace_kind::send;
    s.name = "contrib";
    s.node = "n1";
    s.actor = i % 2 ? "b" : "a";
    s.peer = i % 2 ? "a" : "b";
    s.msg = static_cast<std::uint64_t>(i + 1);
    s.t_ns = 10 * i + 1;
    auto r = s;
    r.kind = trace_kind::receive;
    std::swap(r.actor, r.peer);
    r.t_ns = 10 * i + 5;
    log.events.push_back(s);
    log.events.push_back(r);
  }
  const auto path = critical_path(log, match_messages(log));
  // Every hop is on it: a wire step and a work step each, but the first send's.
  CHECK(path.size() == 2 * hops - 1);
  CHECK(path.front().from_ns == 1);
  CHECK(path.back().to_ns == 10 * (hops - 1) + 5);
}

TEST_CASE("sampling takes the configured share of requests, repeatably", "[trace]") {
  size_t n = 0;
  for (std::uint64_t id = 1; id <= 20000; ++id)
    n += tracing::sampled(id, 0.25);
  CHECK(n > 4700);
  CHECK(n < 5300);
  CHECK(tracing::sampled(123, 0.25) == tracing::sampled(123, 0.25));
  for (std::uint64_t id = 1; id <= 100; ++id) {
    CHECK_FALSE(tracing::sampled(id, 0));
    CHECK(tracing::sampled(id, 1));
  }
}

TEST_CASE("the clock offset comes from the round trip with the least delay", "[trace]") {
  // The remote clock runs 5 ms ahead; the round trips are 3, 0.2 and 9 ms with uneven legs.
  const std::int64_t skew = 5'000'000;
  std::vector<tracing::clock_sample> s{
    {1000, 1000 + 2'500'000 + skew, 1000 + 3'000'000},
    {10'000'000, 10'000'000 + 100'000 + skew, 10'000'000 + 200'000},
    {20'000'000, 20'000'000 + 1'000'000 + skew, 20'000'000 + 9'000'000},
  };
  CHECK(tracing::estimate_offset(s.data(), s.size()) == skew);
  CHECK_THROWS_AS(tracing::estimate_offset(s.data(), 0), std::invalid_argument);
}

TEST_CASE("a traced request through 3 nodes: every message, decision and byte accounted for",
          "[trace][mesh]") {
  const auto dir = std::filesystem::temp_directory_path()
                   / ("eoe_test_trace_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  const test::scratch_dir scratch{dir}; // however the case ends
  auto sink = std::make_shared<net::file_trace_sink>(dir, "");
  tracing::install(sink);
  // When a check ends the case early: the sink out (it writes no more) before the folder goes.
  const struct uninstalled {
    ~uninstalled() {
      tracing::install(nullptr);
    }
  } uninstall;
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  const auto& c = m->config;
  constexpr size_t nodes = 3;
  const auto x = test::random_input(6, c.input_dim, 21);
  infer_result traced, plain;
  {
    test::local_cluster cluster{test::checkpoint(), nodes};
    caf::scoped_actor self{cluster.sys};
    auto send = [&](bool trace, infer_result& out) {
      auto req = test::request_of(x);
      req.trace = trace;
      self->request(cluster.coordinator, std::chrono::seconds(20), infer_atom::value, req)
        .receive([&](infer_result& r) { out = std::move(r); },
                 [&](const caf::error& err) { FAIL(describe(err)); });
    };
    send(false, plain);
    send(true, traced);
  }
  tracing::install(nullptr);
  sink->flush();
  CHECK(plain.trace_id == 0);
  REQUIRE(traced.trace_id != 0);
  CHECK(test::compare(*m, x, traced) <= 1e-6);

  const auto log = load_trace({dir});
  REQUIRE(!log.events.empty());
  const auto traces = traces_of(log);
  REQUIRE(traces.size() == 1); // the untraced request left nothing
  CHECK(traces[0].first == traced.trace_id);
  CHECK(traces[0].second == traced.request);
  for (size_t n = 1; n <= nodes; ++n)
    CHECK(std::filesystem::exists(dir / ("n" + std::to_string(n) + ".trace.jsonl")));

  // Every send has exactly one receive, and every receive one send.
  const auto match = match_messages(log);
  CHECK(match.unmatched_sends.empty());
  CHECK(match.unmatched_receives.empty());
  for (auto& msg : match.messages)
    CHECK(msg.latency_ns >= 0);

  // What the activation record implies, edge by edge.
  const auto got = decode(traced);
  const auto schedule = expert_schedule(c);
  const auto place = round_robin_placement(c, nodes);
  const auto node_name = [](std::uint32_t n) { return "n" + std::to_string(n + 1); };
  const auto relay = [&](std::uint32_t n) { return relay_name(node_name(n)); };
  const auto tokens = static_cast<std::uint64_t>(x.rows());
  const auto dim = static_cast<std::uint64_t>(c.dim);
  auto nodes_of = [&](std::uint32_t l) {
    std::set<std::uint32_t> out(place[l].begin(), place[l].end());
    return out;
  };
  std::map<std::tuple<std::string, std::string, std::string>, std::pair<size_t, std::uint64_t>> want;
  auto add = [&](const std::string& from, const std::string& to, const std::string& kind,
                 std::uint64_t bytes) {
    auto& w = want[{from, to, kind}];
    ++w.first;
    w.second += bytes;
  };
  const std::uint64_t input_bytes = tokens * dim * 4;
  add("coordinator", "composer", "infer", tokens * static_cast<std::uint64_t>(c.input_dim) * 4);
  add("composer", "coordinator", "result", tokens * static_cast<std::uint64_t>(c.classes) * 4);
  for (auto n : nodes_of(schedule[0])) {
    add("composer", relay(n), "contrib", input_bytes);
    for (std::uint32_t e = 0; e < place[schedule[0]].size(); ++e)
      if (place[schedule[0]][e] == n)
        add(relay(n), expert_actor_name(schedule[0], e), "contrib", input_bytes);
  }
  std::map<std::pair<std::string, std::int32_t>, std::uint32_t> active_rows;
  for (std::uint32_t u = 0; u < schedule.size(); ++u) {
    const auto l = schedule[u];
    const auto& lc = c.layers[l];
    const auto& act = got.layers[u].active;
    for (std::uint32_t e = 0; e < static_cast<std::uint32_t>(lc.experts); ++e) {
      const auto me = expert_actor_name(l, e);
      std::uint64_t rows = 0;
      for (auto x : act.experts)
        rows += static_cast<std::uint32_t>(x) == e;
      active_rows[{me, static_cast<std::int32_t>(u)}] = static_cast<std::uint32_t>(rows);
      const std::uint64_t bytes = rows * 4 + rows * 4 + rows * dim * 4 + (e == 0 ? input_bytes : 0);
      if (u + 1 < schedule.size()) {
        const auto next = schedule[u + 1];
        for (auto n : nodes_of(next)) {
          add(me, relay(n), "contrib", bytes);
          for (std::uint32_t f = 0; f < place[next].size(); ++f)
            if (place[next][f] == n)
              add(relay(n), expert_actor_name(next, f), "contrib", bytes);
        }
      } else {
        add(me, "composer", "contrib", bytes);
      }
      // Top-k layers share scores only where each expert scores its own mix (affinity);
      // elsewhere each ranks its peers from the plan's scorers, sending nothing.
      const bool shares = lc.kind == experts::layer_kind::eoe
                          && lc.mode == experts::activation_mode::topk && lc.experts > 1
                          && lc.affinity;
      if (shares) {
        add(me, "composer", "record", 0); // "waiting for my peers"
        for (auto n : nodes_of(l)) {
          add(me, relay(n), "scores", tokens * 4);
          for (std::uint32_t f = 0; f < place[l].size(); ++f)
            if (place[l][f] == n)
              add(relay(n), expert_actor_name(l, f), "scores", tokens * 4);
        }
      }
      const bool scored = lc.kind == experts::layer_kind::eoe || lc.kind == experts::layer_kind::router;
      add(me, "composer", "record", (scored ? tokens * 4 : 0) + rows * 8);
    }
  }
  std::map<std::tuple<std::string, std::string, std::string>, std::pair<size_t, std::uint64_t>> seen;
  for (auto& msg : match.messages) {
    const auto& s = log.events[msg.send];
    auto& w = seen[{s.actor, s.peer, s.name}];
    ++w.first;
    w.second += s.bytes;
  }
  CHECK(seen.size() == want.size());
  for (auto& [k, w] : want) {
    INFO(std::get<0>(k) << " -> " << std::get<1>(k) << " " << std::get<2>(k));
    CHECK(seen[k].first == w.first);
    CHECK(seen[k].second == w.second);
  }

  // One decision per expert and unrolled layer, as the record says.
  size_t decisions = 0;
  for (auto& e : log.events) {
    if (e.kind != trace_kind::activate && e.kind != trace_kind::abstain)
      continue;
    ++decisions;
    INFO(e.actor << " layer " << e.layer);
    const auto rows = active_rows.at({e.actor, e.layer});
    CHECK((e.kind == trace_kind::activate) == (rows > 0));
    CHECK(e.rows == rows);
  }
  CHECK(decisions == active_rows.size());

  // Perfetto: parses; every flow has both ends, each on a slice of its track.
  std::ostringstream pj;
  write_perfetto(pj, log);
  const auto doc = nlohmann::json::parse(pj.str());
  std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> slices;
  std::map<std::uint64_t, int> flow_ends;
  std::set<std::string> track_names;
  for (auto& ev : doc.at("traceEvents")) {
    const auto ph = ev.at("ph").get<std::string>();
    if (ph == "X")
      slices[{ev.at("pid").get<int>(), ev.at("tid").get<int>()}].emplace_back(
        ev.at("ts").get<double>(), ev.at("ts").get<double>() + ev.at("dur").get<double>());
    if (ph == "M" && ev.at("name") == "thread_name")
      track_names.insert(ev.at("args").at("name").get<std::string>());
  }
  size_t flows = 0;
  for (auto& ev : doc.at("traceEvents")) {
    const auto ph = ev.at("ph").get<std::string>();
    if (ph != "s" && ph != "f")
      continue;
    flow_ends[ev.at("id").get<std::uint64_t>()] += ph == "s" ? 1 : 2;
    const double ts = ev.at("ts").get<double>();
    bool on_slice = false;
    for (auto [a, b] : slices[{ev.at("pid").get<int>(), ev.at("tid").get<int>()}])
      on_slice = on_slice || (a <= ts && ts <= b);
    CHECK(on_slice);
    flows += ph == "s";
  }
  CHECK(flows == match.messages.size());
  for (auto& [id, ends] : flow_ends)
    CHECK(ends == 3); // one start and one end

  // The page: well-formed, and it names every actor that took part.
  std::ostringstream page;
  write_flows_page(page, log, 0);
  const auto html = page.str();
  CHECK(xml_problem(html).empty());
  INFO(xml_problem(html));
  std::set<std::string> actors;
  for (auto& e : log.events)
    actors.insert(e.actor);
  CHECK(actors.size() == track_names.size());
  for (auto& a : actors) {
    INFO(a);
    CHECK(html.find(">" + escape_xml(a) + "<") != std::string::npos);
  }

  // The critical path: from the request reaching the composer to the answer reaching the
  // coordinator, every step starting where the previous one ended.
  const auto path = critical_path(log, match);
  REQUIRE(path.size() >= 2 * schedule.size());
  CHECK(path.front().what == "infer from coordinator");
  CHECK(path.back().what == "result from composer");
  for (size_t i = 1; i < path.size(); ++i) {
    CHECK(path[i].from_ns == path[i - 1].to_ns);
    CHECK(path[i].wire != path[i - 1].wire);
  }
}
