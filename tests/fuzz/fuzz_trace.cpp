// Fuzz target: the trace file reader (eoe-trace's input). Any text must give events or an
// error naming the line and the field.
#include "trace_log.hpp"

#include <cstddef>
#include <cstdint>
#include <stdexcept>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  eoe::trace_tool::trace_log log;
  try {
    eoe::trace_tool::parse_into(log, {reinterpret_cast<const char*>(data), size}, "fuzz.jsonl");
    (void) eoe::trace_tool::match_messages(log);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
