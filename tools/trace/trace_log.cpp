#include "trace_log.hpp"

#include "experts/base/utf8.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace eoe::trace_tool {

std::string printable(std::string_view s, size_t max_bytes) {
  auto out = experts::loggable(s, s.size());
  if (out.size() <= max_bytes)
    return out;
  // Cut after escaping, so the label's length is bounded; at a character's first byte.
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80)
    --cut;
  out.resize(cut);
  return out + "... (" + std::to_string(s.size()) + " bytes)";
}

actors::trace_event parse_line(std::string_view line) {
  // nlohmann refuses such a line too, but says neither the byte nor why.
  if (const auto f = experts::find_invalid_utf8(line))
    throw std::invalid_argument(experts::describe("line", *f));
  return actors::parse_trace_line(line);
}

void parse_into(trace_log& log, std::string_view text, const std::string& source) {
  const auto where = experts::escape_invalid_utf8(source); // a path is any bytes
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto end = text.find('\n');
    auto line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos)
      continue;
    try {
      log.events.push_back(parse_line(line));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(where + ":" + std::to_string(line_no) + ": " + e.what());
    }
  }
}

trace_log load_trace(const std::vector<std::filesystem::path>& paths) {
  std::vector<std::filesystem::path> files;
  for (auto& p : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      std::vector<std::filesystem::path> found;
      for (auto& entry : std::filesystem::directory_iterator(p))
        if (entry.path().string().ends_with(".trace.jsonl"))
          found.push_back(entry.path());
      if (found.empty())
        throw std::runtime_error(experts::escape_invalid_utf8(p.string())
                                 + ": no *.trace.jsonl file in this folder");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(p);
    }
  }
  trace_log log;
  for (auto& f : files) {
    std::ifstream in{f, std::ios::binary};
    if (!in)
      throw std::runtime_error(experts::escape_invalid_utf8(f.string())
                               + ": cannot open the trace file");
    std::ostringstream text;
    text << in.rdbuf();
    parse_into(log, text.str(), f.string());
  }
  std::stable_sort(log.events.begin(), log.events.end(),
                   [](const trace_event& a, const trace_event& b) { return a.t_ns < b.t_ns; });
  return log;
}

trace_log only_trace(const trace_log& log, std::uint64_t trace) {
  if (trace == 0)
    return log;
  trace_log out;
  for (auto& e : log.events)
    if (e.trace == trace)
      out.events.push_back(e);
  return out;
}

message_match match_messages(const trace_log& log) {
  using key = std::tuple<std::uint64_t, std::uint64_t, std::uint8_t, std::string>;
  std::map<key, std::vector<size_t>> sends, receives; // key: receiver's name
  const auto& ev = log.events;
  for (size_t i = 0; i < ev.size(); ++i) {
    if (ev[i].kind == trace_kind::send)
      sends[{ev[i].trace, ev[i].msg, ev[i].hop, ev[i].peer}].push_back(i);
    else if (ev[i].kind == trace_kind::receive)
      receives[{ev[i].trace, ev[i].msg, ev[i].hop, ev[i].actor}].push_back(i);
  }
  message_match out;
  for (auto& [k, s] : sends) {
    auto r = receives.find(k);
    const size_t paired = r == receives.end() ? 0 : std::min(s.size(), r->second.size());
    for (size_t i = 0; i < paired; ++i)
      out.messages.push_back({s[i], r->second[i], ev[r->second[i]].t_ns - ev[s[i]].t_ns});
    for (size_t i = paired; i < s.size(); ++i)
      out.unmatched_sends.push_back(s[i]);
    if (r != receives.end()) {
      for (size_t i = paired; i < r->second.size(); ++i)
        out.unmatched_receives.push_back(r->second[i]);
      receives.erase(r);
    }
  }
  for (auto& [k, r] : receives)
    out.unmatched_receives.insert(out.unmatched_receives.end(), r.begin(), r.end());
  std::sort(out.messages.begin(), out.messages.end(),
            [](const message& a, const message& b) { return a.send < b.send; });
  return out;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> traces_of(const trace_log& log) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  std::set<std::uint64_t> seen;
  for (auto& e : log.events)
    if (seen.insert(e.trace).second)
      out.emplace_back(e.trace, e.request);
  return out;
}

} // namespace eoe::trace_tool
