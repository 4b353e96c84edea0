#pragma once
// Trace Event JSON (what ui.perfetto.dev and chrome://tracing open): a process per node, a
// track (thread) per actor, every event a slice, and every message a flow arrow from its send
// slice to its receive slice.

#include "trace_log.hpp"

#include <iosfwd>

namespace eoe::trace_tool {

void write_perfetto(std::ostream& out, const trace_log& log);

} // namespace eoe::trace_tool
