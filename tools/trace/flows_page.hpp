#pragma once
// One self-contained HTML page (inline SVG, no script, no network) of a trace: the message
// sequence chart of one request (a lifeline per actor, grouped and coloured by node, an arrow
// per message), the layer graph (experts by layer, edge widths by the bytes that crossed
// between them, relay hops folded in), and the expert x layer activation heatmap.

#include "trace_log.hpp"

#include <iosfwd>

namespace eoe::trace_tool {

/// trace: the request drawn in the sequence chart (0: the first in the log). The graph and
/// the heatmap cover every trace in the log.
void write_flows_page(std::ostream& out, const trace_log& log, std::uint64_t trace);

/// Text made safe for HTML and XML.
std::string escape_xml(std::string_view s);

} // namespace eoe::trace_tool
