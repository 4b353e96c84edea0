#include "trace_summary.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <ostream>
#include <tuple>

namespace eoe::trace_tool {

namespace {

double percentile(std::vector<double>& xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  const auto i = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(i, xs.size() - 1)];
}

std::string bytes_text(std::uint64_t b) {
  char buf[32];
  if (b < 1024)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  else if (b < 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / 1048576);
  return buf;
}

} // namespace

std::vector<edge_stats> edges_of(const trace_log& log, const message_match& m) {
  std::map<std::tuple<std::string, std::string, std::string>, std::pair<edge_stats, std::vector<double>>> by;
  for (auto& msg : m.messages) {
    const auto& s = log.events[msg.send];
    auto& [e, lat] = by[{s.actor, s.peer, s.name}];
    e.from = s.actor;
    e.to = s.peer;
    e.name = s.name;
    ++e.count;
    e.bytes += s.bytes;
    lat.push_back(static_cast<double>(msg.latency_ns) / 1e3);
  }
  std::vector<edge_stats> out;
  for (auto& [k, v] : by) {
    auto& [e, lat] = v;
    e.p50_us = percentile(lat, 0.5);
    e.p99_us = percentile(lat, 0.99);
    e.max_us = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<expert_activity> activity_of(const trace_log& log) {
  std::map<std::pair<std::int32_t, std::string>, expert_activity> by;
  for (auto& e : log.events) {
    const bool decision = e.kind == trace_kind::activate || e.kind == trace_kind::abstain;
    const bool mix = e.kind == trace_kind::merge && e.name == "mix";
    if (!decision && !mix)
      continue;
    auto& a = by[{e.layer, e.actor}];
    a.actor = e.actor;
    a.layer = e.layer;
    a.expert = e.expert;
    if (mix) {
      a.tokens_seen += e.rows;
      continue;
    }
    ++a.decisions;
    if (e.kind == trace_kind::activate) {
      ++a.activations;
      a.tokens_active += e.rows;
    }
  }
  std::vector<expert_activity> out;
  for (auto& [k, a] : by)
    out.push_back(a);
  std::sort(out.begin(), out.end(), [](const expert_activity& a, const expert_activity& b) {
    return std::tie(a.layer, a.expert, a.actor) < std::tie(b.layer, b.expert, b.actor);
  });
  return out;
}

std::vector<path_step> critical_path(const trace_log& log, const message_match& m) {
  const auto& ev = log.events;
  if (ev.empty())
    return {};
  std::map<size_t, size_t> send_of; // receive -> send
  for (auto& msg : m.messages)
    send_of[msg.receive] = msg.send;
  // The end: the answer reaching the coordinator, else the last event.
  size_t cur = ev.size() - 1;
  for (size_t i = 0; i < ev.size(); ++i)
    if (ev[i].kind == trace_kind::receive && ev[i].name == "result")
      cur = i;
  // Each actor's receives by (time, index): "its latest receive before" is a binary search,
  // so that a long trace is not quadratic.
  std::map<std::string_view, std::vector<size_t>> receives_of;
  for (size_t i = 0; i < ev.size(); ++i)
    if (ev[i].kind == trace_kind::receive)
      receives_of[ev[i].actor].push_back(i);
  const auto later = [&](size_t a, size_t b) {
    return std::tie(ev[a].t_ns, a) < std::tie(ev[b].t_ns, b);
  };
  for (auto& [actor, rs] : receives_of)
    std::sort(rs.begin(), rs.end(), later);
  std::vector<path_step> steps;
  for (size_t guard = 0; guard <= ev.size(); ++guard) {
    const auto& e = ev[cur];
    if (e.kind == trace_kind::receive) {
      auto s = send_of.find(cur);
      if (s == send_of.end())
        break;
      const auto& from = ev[s->second];
      steps.push_back({true, e.actor, e.name + " from " + from.actor, from.t_ns, e.t_ns});
      cur = s->second;
      continue;
    }
    // Inside an actor: what it waited for last is its latest receive (of this request)
    // before this event.
    // (The latest by time, the last of equal times; never the event itself.)
    std::optional<size_t> before;
    if (auto rs = receives_of.find(e.actor); rs != receives_of.end()) {
      auto it = std::partition_point(rs->second.begin(), rs->second.end(),
                                     [&](size_t i) { return ev[i].t_ns <= e.t_ns; });
      if (it != rs->second.begin() && *std::prev(it) == cur)
        --it;
      if (it != rs->second.begin())
        before = *std::prev(it);
    }
    if (!before)
      break;
    steps.push_back({false, e.actor, "in " + e.actor, ev[*before].t_ns, e.t_ns});
    cur = *before;
  }
  std::reverse(steps.begin(), steps.end());
  return steps;
}

void print_summary(std::ostream& out, const trace_log& log, std::uint64_t trace) {
  const auto m = match_messages(log);
  const auto traces = traces_of(log);
  char line[512];
  out << log.events.size() << " events of " << traces.size() << " traced request(s); "
      << m.messages.size() << " messages, " << m.unmatched_sends.size()
      << " sends without a receive, " << m.unmatched_receives.size()
      << " receives without a send\n\n";
  out << "edges (sender -> receiver: message kind): messages, bytes, wire latency p50 / p99 / max\n";
  for (auto& e : edges_of(log, m)) {
    // Names come from the file: printable() keeps them short and free of control characters,
    // so that every line fits `line` whole.
    std::snprintf(line, sizeof line, "  %-16s -> %-16s %-8s %6zu %11s %9.1f / %9.1f / %9.1f us\n",
                  printable(e.from).c_str(), printable(e.to).c_str(), printable(e.name).c_str(),
                  e.count, bytes_text(e.bytes).c_str(),
                  e.p50_us, e.p99_us, e.max_us);
    out << line;
  }
  out << "\nexpert activation (per unrolled layer): requests active / decided, tokens active / seen\n";
  for (auto& a : activity_of(log)) {
    std::snprintf(line, sizeof line, "  layer %2d  %-16s %5zu / %-5zu  %7llu / %-7llu (%5.1f%%)\n",
                  a.layer, printable(a.actor).c_str(), a.activations, a.decisions,
                  static_cast<unsigned long long>(a.tokens_active),
                  static_cast<unsigned long long>(a.tokens_seen),
                  a.tokens_seen ? 100.0 * static_cast<double>(a.tokens_active) / static_cast<double>(a.tokens_seen) : 0.0);
    out << line;
  }
  if (traces.empty())
    return;
  const auto chosen = trace != 0 ? trace : traces.front().first;
  const auto one = only_trace(log, chosen);
  if (one.events.empty()) {
    out << "\nno events of trace " << chosen << "\n";
    return;
  }
  const auto path = critical_path(one, match_messages(one));
  if (path.empty())
    return;
  const auto t0 = path.front().from_ns;
  std::snprintf(line, sizeof line, "\ncritical path of request %llu (trace %llu): %.3f ms\n",
                static_cast<unsigned long long>(one.events.front().request),
                static_cast<unsigned long long>(chosen),
                static_cast<double>(path.back().to_ns - t0) / 1e6);
  // (Differences of times cannot overflow: a line holds at most 4e18 ns, parse_trace_line.)
  out << line;
  for (auto& s : path) {
    std::snprintf(line, sizeof line, "  +%9.3f ms %9.1f us  %-5s %-16s %s\n",
                  static_cast<double>(s.from_ns - t0) / 1e6,
                  static_cast<double>(s.to_ns - s.from_ns) / 1e3, s.wire ? "wire" : "work",
                  printable(s.actor).c_str(), printable(s.what, 160).c_str());
    out << line;
  }
}

} // namespace eoe::trace_tool
