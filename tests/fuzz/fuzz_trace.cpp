// Fuzz target: eoe-trace from the file's bytes to what it writes. Any text must give events or
// an error naming the file and the line ("fuzz.jsonl:N: ..."), valid UTF-8 and of bounded
// length; and whatever events were read before a bad line, every output is written without
// throwing: the summary (valid UTF-8, no control characters but newlines), the Perfetto JSON
// (parses back with nlohmann), the HTML page (valid UTF-8, no control characters but newlines
// and tabs); every event survives to_json_line -> parse_trace_line unchanged.
#include "flows_page.hpp"
#include "experts/base/utf8.hpp"
#include "perfetto_json.hpp"
#include "trace_log.hpp"
#include "trace_summary.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>

namespace {

void check_text(const std::string& s, bool tabs) {
  if (eoe::experts::find_invalid_utf8(s))
    __builtin_trap();
  for (char c : s)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && !(tabs && c == '\t')) || c == 0x7f)
      __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace eoe::trace_tool;
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  trace_log log;
  try {
    parse_into(log, text, "fuzz.jsonl");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    // "fuzz.jsonl:LINE: ...", one line, UTF-8, and short: no input is echoed whole.
    if (!what.starts_with("fuzz.jsonl:") || what.size() > 400)
      __builtin_trap();
    check_text(what, false);
    if (what.find('\n') != std::string::npos)
      __builtin_trap();
  }
  // Whatever was read (the lines before a bad one) is written out in every format.
  for (const auto& e : log.events) {
    auto back = eoe::actors::parse_trace_line(eoe::actors::to_json_line(e));
    if (std::isnan(back.score) != std::isnan(e.score)
        || (!std::isnan(e.score) && back.score != e.score))
      __builtin_trap();
    auto want = e;
    want.score = back.score = 0; // (NaN equals nothing)
    if (!(back == want))
      __builtin_trap();
  }
  std::ostringstream summary, perfetto, html;
  print_summary(summary, log, 0);
  check_text(summary.str(), false);
  write_perfetto(perfetto, log);
  if (nlohmann::json::parse(perfetto.str(), nullptr, false).is_discarded())
    __builtin_trap();
  write_flows_page(html, log, 0);
  check_text(html.str(), true);
  return 0;
}
