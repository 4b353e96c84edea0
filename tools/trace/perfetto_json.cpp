#include "perfetto_json.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <ostream>

namespace eoe::trace_tool {

namespace {

/// Slices shorter than this are drawn this long, so that every one can be seen and hold its
/// flow ends.
constexpr double min_slice_us = 1.0;

std::string slice_name(const trace_event& e) {
  switch (e.kind) {
    case trace_kind::send:
      return "send " + e.name + " -> " + e.peer;
    case trace_kind::receive:
      return "recv " + e.name + " <- " + e.peer;
    case trace_kind::activate:
      return "activate";
    case trace_kind::abstain:
      return "abstain";
    default:
      return e.name;
  }
}

} // namespace

void write_perfetto(std::ostream& out, const trace_log& log) {
  const auto& ev = log.events;
  std::int64_t t0 = ev.empty() ? 0 : ev.front().t_ns;
  for (auto& e : ev)
    t0 = std::min(t0, e.t_ns);
  // t >= t0: the difference as unsigned is exact and cannot overflow.
  const auto us = [t0](std::int64_t t) {
    const auto ns = static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(t0);
    return static_cast<double>(ns) / 1e3;
  };
  // pid per node, tid per actor (numbered in order of appearance).
  std::map<std::string, int> pid;
  std::map<std::pair<std::string, std::string>, int> tid;
  auto events = nlohmann::json::array();
  for (auto& e : ev) {
    auto [p, new_node] = pid.try_emplace(e.node, static_cast<int>(pid.size()) + 1);
    if (new_node) {
      events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", p->second}, {"tid", 0},
                        {"args", {{"name", "node " + e.node}}}});
      events.push_back({{"ph", "M"}, {"name", "process_sort_index"}, {"pid", p->second},
                        {"tid", 0}, {"args", {{"sort_index", p->second}}}});
    }
    auto [t, new_actor] = tid.try_emplace({e.node, e.actor}, static_cast<int>(tid.size()) + 1);
    if (new_actor)
      events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", p->second},
                        {"tid", t->second}, {"args", {{"name", e.actor}}}});
  }
  for (auto& e : ev) {
    nlohmann::json args = {{"request", e.request}, {"trace", std::to_string(e.trace)}};
    if (!e.peer.empty())
      args["peer"] = e.peer;
    if (e.bytes)
      args["bytes"] = e.bytes;
    if (e.layer >= 0)
      args["layer"] = e.layer;
    if (e.expert >= 0)
      args["expert"] = e.expert;
    if (e.rows)
      args["rows"] = e.rows;
    if (!std::isnan(e.score))
      args["score"] = e.score;
    events.push_back({{"ph", "X"},
                      {"name", slice_name(e)},
                      {"cat", std::string(actors::to_string(e.kind))},
                      {"pid", pid[e.node]},
                      {"tid", tid[{e.node, e.actor}]},
                      {"ts", us(e.t_ns)},
                      {"dur", std::max(min_slice_us, static_cast<double>(e.dur_ns) / 1e3)},
                      {"args", args}});
  }
  const auto m = match_messages(log);
  std::uint64_t flow = 0;
  for (auto& msg : m.messages) {
    const auto& s = ev[msg.send];
    const auto& r = ev[msg.receive];
    ++flow;
    events.push_back({{"ph", "s"}, {"name", s.name}, {"cat", "message"}, {"id", flow},
                      {"pid", pid[s.node]}, {"tid", tid[{s.node, s.actor}]}, {"ts", us(s.t_ns)}});
    events.push_back({{"ph", "f"}, {"bp", "e"}, {"name", s.name}, {"cat", "message"},
                      {"id", flow}, {"pid", pid[r.node]}, {"tid", tid[{r.node, r.actor}]},
                      {"ts", us(r.t_ns)}});
  }
  nlohmann::json doc = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ns"}};
  // replace: a name that is not UTF-8 (an event not read from a file) must not throw here.
  out << doc.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

} // namespace eoe::trace_tool
