// Tracing: the event format and its errors, sampling, clock offsets; and a traced request
// through a 3-node cluster (every layer kind of the mesh test model): every send has exactly
// one receive, the messages per edge and their bytes are what the activation record implies,
// decisions match the record, the Perfetto JSON parses with both ends of every flow on a
// slice, the HTML page is well-formed and names every actor, the critical path is unbroken.

#include "actors/trace.hpp"
#include "flows_page.hpp"
#include "local_cluster_fixture.hpp"
#include "mesh_model.hpp"
#include "net/trace_sink.hpp"
#include "perfetto_json.hpp"
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
  CHECK(parse_error("{\"trace\":1") == "not a JSON object");
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
  auto sink = std::make_shared<net::file_trace_sink>(dir, "");
  tracing::install(sink);
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
      const bool shares = lc.kind == experts::layer_kind::eoe
                          && lc.mode == experts::activation_mode::topk && lc.experts > 1;
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
  std::filesystem::remove_all(dir);
}
