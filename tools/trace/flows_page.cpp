#include "flows_page.hpp"

#include "trace_summary.hpp"

#include "experts/base/utf8.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

namespace eoe::trace_tool {

std::string escape_xml(std::string_view raw) {
  // Bytes that are not UTF-8 as \xNN: the page says it is UTF-8.
  const auto s = experts::escape_invalid_utf8(raw);
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
          out += ' ';
        else
          out += c;
    }
  }
  return out;
}

namespace {

const char* const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

std::string bytes_text(std::uint64_t b) {
  if (b < 1024)
    return std::to_string(b) + " B";
  if (b < 1024 * 1024)
    return fmt("%.1f KiB", static_cast<double>(b) / 1024);
  return fmt("%.2f MiB", static_cast<double>(b) / 1048576);
}

/// Sort key of an actor: coordinator, composer, then by node: relay, experts by layer and id.
struct actor_key {
  int group = 0;
  std::string node;
  std::int64_t layer = 0, id = 0;
  std::string name;
  auto operator<=>(const actor_key&) const = default;
};

actor_key key_of(const std::string& actor, const std::string& node) {
  if (actor == "coordinator")
    return {0, "", 0, 0, actor};
  if (actor == "composer")
    return {1, "", 0, 0, actor};
  // "expert L.I", read with from_chars: a name from the file may hold any digits (sscanf's %d
  // is undefined past an int).
  std::string_view rest{actor};
  std::int32_t layer = 0, id = 0;
  if (rest.starts_with("expert ")) {
    rest.remove_prefix(7);
    const auto* end = rest.data() + rest.size();
    auto [p, ec] = std::from_chars(rest.data(), end, layer);
    if (ec == std::errc{} && p != end && *p == '.') {
      auto [q, ec2] = std::from_chars(p + 1, end, id);
      if (ec2 == std::errc{})
        return {2, node, std::int64_t{layer} + 1, id, actor};
    }
  }
  return {2, node, 0, 0, actor};
}

void write_sequence_chart(std::ostream& out, const trace_log& all, std::uint64_t trace,
                          const std::map<std::string, std::string>& node_colour) {
  const auto log = only_trace(all, trace);
  const auto& ev = log.events;
  if (ev.empty()) {
    out << "<p>No events of trace " << trace << ".</p>\n";
    return;
  }
  const auto m = match_messages(log);
  std::map<actor_key, std::string> order; // key -> actor
  std::map<std::string, std::string> node_of;
  for (auto& e : ev) {
    order.emplace(key_of(e.actor, e.node), e.actor);
    node_of.emplace(e.actor, e.node);
  }
  std::map<std::string, int> column;
  std::vector<std::string> actors;
  for (auto& [k, a] : order) {
    column[a] = static_cast<int>(actors.size());
    actors.push_back(a);
  }
  // Rows: events in time order, packed so that a row holds at most one event per actor (an
  // actor's events keep their order, and time runs down the page).
  std::vector<int> row(ev.size());
  std::vector<size_t> row_first; // the first event of each row
  {
    std::set<std::string> in_row;
    for (size_t i = 0; i < ev.size(); ++i) {
      if (row_first.empty() || in_row.contains(ev[i].actor)) {
        row_first.push_back(i);
        in_row.clear();
      }
      in_row.insert(ev[i].actor);
      row[i] = static_cast<int>(row_first.size()) - 1;
    }
  }
  constexpr int col_w = 96, row_h = 16, left = 90, top = 64;
  const int width = left + col_w * static_cast<int>(actors.size()) + 20;
  const int height = top + row_h * static_cast<int>(row_first.size()) + 30;
  const auto x_of = [&](const std::string& a) { return left + col_w * column[a] + col_w / 2; };
  const auto y_of = [&](size_t i) { return top + row_h * row[i] + row_h / 2; };
  const auto t0 = ev.front().t_ns;
  out << "<div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width
      << "\" height=\"" << height << "\" font-family=\"sans-serif\" font-size=\"10\">\n"
      << "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" "
         "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" "
         "fill=\"#333\"/></marker></defs>\n";
  // Node bands, actor headers and lifelines.
  for (size_t i = 0; i < actors.size(); ++i) {
    const auto& a = actors[i];
    const auto& node = node_of[a];
    const auto x = left + col_w * static_cast<int>(i);
    const auto& colour = node_colour.at(node);
    out << "<rect x=\"" << x + 2 << "\" y=\"4\" width=\"" << col_w - 4
        << "\" height=\"16\" fill=\"" << colour << "\" opacity=\"0.35\"/>"
        << "<text x=\"" << x + col_w / 2 << "\" y=\"16\" text-anchor=\"middle\">node "
        << escape_xml(node) << "</text>\n"
        << "<rect x=\"" << x + 4 << "\" y=\"26\" width=\"" << col_w - 8
        << "\" height=\"26\" rx=\"4\" fill=\"" << colour << "\"/>"
        << "<text x=\"" << x + col_w / 2 << "\" y=\"43\" text-anchor=\"middle\" fill=\"white\" "
           "font-weight=\"bold\" font-size=\"11\">"
        << escape_xml(a) << "</text>\n"
        << "<line x1=\"" << x + col_w / 2 << "\" y1=\"52\" x2=\"" << x + col_w / 2 << "\" y2=\""
        << height - 10 << "\" stroke=\"#bbb\" stroke-dasharray=\"3,3\"/>\n";
  }
  // The actor names again every 40 rows, so that a long chart stays readable.
  for (size_t r = 40; r + 10 < row_first.size(); r += 40)
    for (size_t i = 0; i < actors.size(); ++i)
      out << "<text x=\"" << left + col_w * static_cast<int>(i) + col_w / 2 << "\" y=\""
          << top + row_h * static_cast<int>(r) << "\" text-anchor=\"middle\" font-size=\"9\" "
             "font-weight=\"bold\" fill=\""
          << node_colour.at(node_of[actors[i]]) << "\">" << escape_xml(actors[i]) << "</text>\n";
  // Time labels every 4 rows, and a light guide line.
  for (size_t r = 0; r < row_first.size(); r += 4) {
    const auto i = row_first[r];
    out << "<text x=\"4\" y=\"" << y_of(i) + 3 << "\" fill=\"#666\">+"
        << fmt("%.3f", static_cast<double>(ev[i].t_ns - t0) / 1e6) << " ms</text>"
        << "<line x1=\"" << left << "\" y1=\"" << y_of(i) << "\" x2=\"" << width - 20
        << "\" y2=\"" << y_of(i) << "\" stroke=\"#eee\"/>\n";
  }
  // Work slices and decisions on the lifelines.
  for (size_t i = 0; i < ev.size(); ++i) {
    const auto& e = ev[i];
    const auto x = x_of(e.actor);
    const auto y = y_of(i);
    std::string tip = std::string(actors::to_string(e.kind)) + " " + e.name;
    if (e.layer >= 0)
      tip += ", layer " + std::to_string(e.layer);
    if (e.rows)
      tip += ", " + std::to_string(e.rows) + " tokens";
    if (!std::isnan(e.score))
      tip += ", mean score " + fmt("%.3f", e.score);
    tip += ", " + fmt("%.1f", static_cast<double>(e.dur_ns) / 1e3) + " us";
    switch (e.kind) {
      case trace_kind::compute:
      case trace_kind::merge:
        out << "<rect x=\"" << x - 32 << "\" y=\"" << y - 6 << "\" width=\"64\" height=\"12\" "
               "rx=\"2\" fill=\"#fff3c4\" stroke=\"#c9a400\"><title>"
            << escape_xml(tip) << "</title></rect><text x=\"" << x << "\" y=\"" << y + 3
            << "\" text-anchor=\"middle\" font-size=\"9\">" << escape_xml(e.name) << " "
            << fmt("%.0f", static_cast<double>(e.dur_ns) / 1e3) << "us</text>\n";
        break;
      case trace_kind::activate:
        out << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"5\" fill=\"#2ca02c\"><title>"
            << escape_xml(tip) << "</title></circle><text x=\"" << x + 8 << "\" y=\"" << y + 3
            << "\" font-size=\"9\" fill=\"#2ca02c\">active " << e.rows << "</text>\n";
        break;
      case trace_kind::abstain:
        out << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"5\" fill=\"white\" "
               "stroke=\"#999\"><title>"
            << escape_xml(tip) << "</title></circle><text x=\"" << x + 8 << "\" y=\"" << y + 3
            << "\" font-size=\"9\" fill=\"#999\">abstain</text>\n";
        break;
      default:
        break;
    }
  }
  // Messages: an arrow from the send's row on the sender's lifeline to the receive's row.
  for (auto& msg : m.messages) {
    const auto& s = ev[msg.send];
    const auto& r = ev[msg.receive];
    const auto x1 = x_of(s.actor), x2 = x_of(r.actor);
    const auto y1 = y_of(msg.send), y2 = y_of(msg.receive);
    const auto colour = s.name == "contrib" ? "#333" : s.name == "scores" ? "#7b3fb0" : "#1f77b4";
    const auto opacity = s.name == "contrib" ? "0.9" : "0.45";
    const std::string tip = s.name + " " + s.actor + " -> " + r.actor + ", " + bytes_text(s.bytes)
                            + ", " + fmt("%.1f", static_cast<double>(msg.latency_ns) / 1e3)
                            + " us on the wire";
    if (x1 == x2) {
      out << "<path d=\"M" << x1 << "," << y1 << " C" << x1 + 40 << "," << y1 << " " << x1 + 40
          << "," << y2 << " " << x2 + 2 << "," << y2 << "\" fill=\"none\" stroke=\"" << colour
          << "\" stroke-opacity=\"" << opacity << "\" marker-end=\"url(#arrow)\"><title>" << escape_xml(tip) << "</title></path>\n";
    } else {
      out << "<line x1=\"" << x1 << "\" y1=\"" << y1 << "\" x2=\"" << x2 << "\" y2=\"" << y2
          << "\" stroke=\"" << colour << "\" stroke-opacity=\"" << opacity
          << "\" stroke-width=\"1.2\" marker-end=\"url(#arrow)\"><title>"
          << escape_xml(tip) << "</title></line>\n";
    }
    // Labels on what carries data from its first sender only: fan-outs and score shares are
    // told by their colour (and their tooltips).
    if (s.name != "contrib" || s.hop != 0)
      continue;
    const int lx = x1 + (x2 > x1 ? 6 : -6);
    out << "<text x=\"" << lx << "\" y=\"" << y1 - 2 << "\" font-size=\"8\" fill=\"" << colour
        << "\" text-anchor=\"" << (x2 >= x1 ? "start" : "end") << "\">" << escape_xml(s.name) << " "
        << escape_xml(bytes_text(s.bytes)) << "</text>\n";
  }
  // Sends and receives no arrow explains (an actor that never answered, a lost node).
  for (auto i : m.unmatched_sends)
    out << "<text x=\"" << x_of(ev[i].actor) + 6 << "\" y=\"" << y_of(i) + 3
        << "\" fill=\"#d62728\" font-size=\"9\">" << escape_xml(ev[i].name) << " to "
        << escape_xml(ev[i].peer) << ": never received</text>\n";
  out << "</svg></div>\n";
}

/// The layer graph: an expert per (actor, layer) in its layer's column, the input and output
/// (the composer) at the ends; contributions folded through the relays they passed.
void write_layer_graph(std::ostream& out, const trace_log& log,
                       const std::map<std::string, std::string>& node_colour) {
  const auto& ev = log.events;
  const auto m = match_messages(log);
  // The original sender of every message that went through a relay: (trace, msg) -> send.
  std::map<std::pair<std::uint64_t, std::uint64_t>, size_t> origin;
  for (size_t i = 0; i < ev.size(); ++i)
    if (ev[i].kind == trace_kind::send && ev[i].hop == 0 && ev[i].name == "contrib")
      origin.emplace(std::pair{ev[i].trace, ev[i].msg}, i);
  // Columns are int64: a layer read from a file may be any int32, and the output is one past
  // the last.
  std::int64_t last_layer = 0;
  for (auto& e : ev)
    if (e.name == "contrib" && e.kind == trace_kind::receive)
      last_layer = std::max<std::int64_t>(last_layer, e.layer);
  // Graph vertices: (column, actor). Column = layer of the receiver; 0 is the input.
  using vertex = std::pair<std::int64_t, std::string>;
  std::map<vertex, std::string> node_of;
  std::map<std::pair<vertex, vertex>, std::uint64_t> edges;
  for (auto& msg : m.messages) {
    const auto& r = ev[msg.receive];
    if (r.name != "contrib" || r.actor.starts_with("relay "))
      continue; // relays are folded in: their hop-1 deliveries carry the edge
    auto o = origin.find({r.trace, r.msg});
    if (o == origin.end())
      continue;
    const auto& s = ev[o->second];
    const std::int64_t to_col = r.actor == "composer" ? last_layer + 1 : std::int64_t{r.layer} + 1;
    const std::int64_t from_col = to_col - 1;
    const vertex from{from_col, s.actor == "composer" ? "input" : s.actor};
    const vertex to{to_col, r.actor == "composer" ? "output" : r.actor};
    node_of[from] = s.node;
    node_of[to] = r.node;
    edges[{from, to}] += s.bytes;
  }
  if (edges.empty()) {
    out << "<p>No contributions in this trace.</p>\n";
    return;
  }
  std::map<std::int64_t, std::vector<std::string>> columns;
  for (auto& [v, node] : node_of)
    columns[v.first].push_back(v.second);
  size_t tallest = 0;
  for (auto& [c, names] : columns) {
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
      return key_of(a, "") < key_of(b, "");
    });
    tallest = std::max(tallest, names.size());
  }
  constexpr int col_w = 210, row_h = 44, top = 40;
  const int width = col_w * static_cast<int>(columns.size()) + 40;
  const int height = top + row_h * static_cast<int>(tallest) + 20;
  // A column is drawn at its place among the columns there are (x of the rank, not of the layer
  // number, which the file may make huge).
  std::map<std::int64_t, int> x_of;
  for (auto& [c, names] : columns)
    x_of.emplace(c, 30 + col_w * static_cast<int>(x_of.size()) + 60);
  std::map<vertex, std::pair<int, int>> at;
  for (auto& [c, names] : columns)
    for (size_t i = 0; i < names.size(); ++i) {
      const int offset = (static_cast<int>(tallest) - static_cast<int>(names.size())) * row_h / 2;
      at[{c, names[i]}] = {x_of[c], top + offset + row_h * static_cast<int>(i) + row_h / 2};
    }
  std::uint64_t most = 1;
  for (auto& [k, b] : edges)
    most = std::max(most, b);
  out << "<div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width
      << "\" height=\"" << height << "\" font-family=\"sans-serif\" font-size=\"10\">\n";
  for (auto& [c, names] : columns)
    out << "<text x=\"" << x_of[c] << "\" y=\"18\" text-anchor=\"middle\" "
           "font-weight=\"bold\">"
        << (c == 0 ? std::string("input") : c == last_layer + 1 ? std::string("output")
                                                                 : "layer " + std::to_string(c - 1))
        << "</text>\n";
  for (auto& [k, b] : edges) {
    const auto [x1, y1] = at[k.first];
    const auto [x2, y2] = at[k.second];
    const double w = 0.8 + 10.0 * std::sqrt(static_cast<double>(b) / static_cast<double>(most));
    out << "<path d=\"M" << x1 + 56 << "," << y1 << " C" << x1 + 120 << "," << y1 << " "
        << x2 - 120 << "," << y2 << " " << x2 - 56 << "," << y2 << "\" fill=\"none\" "
        << "stroke=\"#4e79a7\" stroke-opacity=\"0.45\" stroke-width=\"" << fmt("%.2f", w)
        << "\"><title>" << escape_xml(k.first.second + " -> " + k.second.second + ": " + bytes_text(b))
        << "</title></path>\n";
  }
  for (auto& [v, pos] : at) {
    const auto& node = node_of[v];
    out << "<rect x=\"" << pos.first - 56 << "\" y=\"" << pos.second - 14
        << "\" width=\"112\" height=\"28\" rx=\"5\" fill=\"" << node_colour.at(node) << "\"/>"
        << "<text x=\"" << pos.first << "\" y=\"" << pos.second - 1
        << "\" text-anchor=\"middle\" fill=\"white\" font-weight=\"bold\">" << escape_xml(v.second)
        << "</text><text x=\"" << pos.first << "\" y=\"" << pos.second + 10
        << "\" text-anchor=\"middle\" fill=\"white\" font-size=\"8\">node " << escape_xml(node)
        << "</text>\n";
  }
  out << "</svg></div>\n";
}

void write_heatmap(std::ostream& out, const trace_log& log) {
  const auto act = activity_of(log);
  if (act.empty()) {
    out << "<p>No expert decisions in this trace.</p>\n";
    return;
  }
  // Rows: expert ids; columns: unrolled layers; a cell: expert "layer.id" on that layer.
  std::set<int> layers, ids;
  std::map<std::pair<int, int>, const expert_activity*> cell;
  for (auto& a : act) {
    layers.insert(a.layer);
    ids.insert(a.expert);
    cell[{a.expert, a.layer}] = &a;
  }
  constexpr int cell_w = 72, cell_h = 24, left = 80, top = 36;
  const int width = left + cell_w * static_cast<int>(layers.size()) + 20;
  const int height = top + cell_h * static_cast<int>(ids.size()) + 10;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"10\">\n";
  int c = 0;
  for (int l : layers)
    out << "<text x=\"" << left + cell_w * c++ + cell_w / 2 << "\" y=\"28\" text-anchor=\"middle\" "
           "font-weight=\"bold\">layer "
        << l << "</text>\n";
  int r = 0;
  for (int id : ids) {
    const int y = top + cell_h * r++;
    out << "<text x=\"" << left - 6 << "\" y=\"" << y + 15 << "\" text-anchor=\"end\">expert "
        << id << "</text>\n";
    c = 0;
    for (int l : layers) {
      const int x = left + cell_w * c++;
      auto i = cell.find({id, l});
      if (i == cell.end()) {
        out << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell_w - 2 << "\" height=\""
            << cell_h - 2 << "\" fill=\"#f4f4f4\"/>\n";
        continue;
      }
      const auto& a = *i->second;
      // At most 1 (a file may claim more tokens active than seen): the shade stays a colour.
      const double share =
        a.tokens_seen ? std::min(1.0, static_cast<double>(a.tokens_active)
                                        / static_cast<double>(a.tokens_seen))
                      : 0;
      const int shade = static_cast<int>(255 - 200 * share);
      out << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell_w - 2 << "\" height=\""
          << cell_h - 2 << "\" fill=\"rgb(" << shade << "," << shade << ",255)\"><title>"
          << escape_xml(a.actor) << " on layer " << l << ": " << a.tokens_active << " of "
          << a.tokens_seen << " tokens, active in " << a.activations << " of " << a.decisions
          << " requests</title></rect><text x=\"" << x + cell_w / 2 - 1 << "\" y=\"" << y + 15
          << "\" text-anchor=\"middle\" fill=\"" << (share > 0.6 ? "white" : "black") << "\">"
          << fmt("%.0f%%", 100 * share) << "</text>\n";
    }
  }
  out << "</svg>\n";
}

} // namespace

void write_flows_page(std::ostream& out, const trace_log& log, std::uint64_t trace) {
  const auto traces = traces_of(log);
  if (trace == 0 && !traces.empty())
    trace = traces.front().first;
  std::uint64_t request = 0;
  for (auto& [t, r] : traces)
    if (t == trace)
      request = r;
  std::map<std::string, std::string> node_colour;
  for (auto& e : log.events)
    node_colour.emplace(e.node, "");
  size_t i = 0;
  for (auto& [node, colour] : node_colour)
    colour = palette[i++ % std::size(palette)];
  const auto m = match_messages(log);
  out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
         "<title>eoe trace: request "
      << request << "</title>\n<style>\n"
         "body { font-family: sans-serif; margin: 20px; color: #222; }\n"
         "h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }\n"
         ".scroll { overflow: auto; border: 1px solid #ddd; max-width: 100%; }\n"
         "table { border-collapse: collapse; font-size: 12px; }\n"
         "td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }\n"
         "td:first-child, td:nth-child(2), td:nth-child(3) { text-align: left; }\n"
         ".legend span { display: inline-block; padding: 2px 8px; margin-right: 6px; color: white; "
         "border-radius: 3px; }\n"
         "</style>\n</head>\n<body>\n";
  out << "<h1>eoe trace: request " << request << " (trace " << trace << ")</h1>\n<p>"
      << log.events.size() << " events of " << traces.size() << " traced request(s), "
      << m.messages.size() << " messages, " << m.unmatched_sends.size()
      << " sends without a receive.</p>\n<p class=\"legend\">";
  for (auto& [node, colour] : node_colour)
    out << "<span style=\"background: " << colour << "\">node " << escape_xml(node) << "</span>";
  out << "</p>\n<h2>Message sequence of request " << request
      << "</h2>\n<p>Time runs down, one row per event; arrows are messages (black: contributions, "
         "purple: top-k score shares, blue: records and the request/answer); yellow boxes are "
         "work; green dots are activations, hollow ones abstentions. Hover for details.</p>\n";
  write_sequence_chart(out, log, trace, node_colour);
  out << "<h2>Layer graph</h2>\n<p>Contributions between the experts of consecutive layers over "
         "every traced request (relay hops folded in); edge width grows with the bytes sent.</p>\n";
  write_layer_graph(out, log, node_colour);
  out << "<h2>Expert activation by layer</h2>\n<p>Share of the tokens expert layer.id saw that "
         "it took, over every traced request (rows: expert ids; columns: layers as run).</p>\n";
  write_heatmap(out, log);
  out << "<h2>Edges</h2>\n<table>\n<tr><th>sender</th><th>receiver</th><th>kind</th>"
         "<th>messages</th><th>bytes</th><th>p50 us</th><th>p99 us</th></tr>\n";
  for (auto& e : edges_of(log, m))
    out << "<tr><td>" << escape_xml(e.from) << "</td><td>" << escape_xml(e.to) << "</td><td>"
        << escape_xml(e.name) << "</td><td>" << e.count << "</td><td>" << bytes_text(e.bytes)
        << "</td><td>" << fmt("%.1f", e.p50_us) << "</td><td>" << fmt("%.1f", e.p99_us)
        << "</td></tr>\n";
  out << "</table>\n</body>\n</html>\n";
}

} // namespace eoe::trace_tool
