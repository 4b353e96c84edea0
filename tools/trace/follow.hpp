#pragma once
// eoe-trace follow: a live view of a running cluster, one line per event, from the trace
// collector the head runs ([trace] collector in the cluster file).

#include "actors/trace.hpp"
#include "net/tls_settings.hpp"

#include <cstdint>
#include <iosfwd>
#include <string>

namespace eoe::trace_tool {

/// One event as one line of text.
std::string one_line(const actors::trace_event& e);

/// Connects to the collector at host:port (over TLS with these credentials, when given) and
/// prints each event until the collector closes or `limit` events were shown (0: no limit).
/// Returns the events shown; throws std::runtime_error when it cannot connect.
std::uint64_t follow(const std::string& address, std::ostream& out, std::uint64_t limit,
                     const net::tls_settings& tls = {});

} // namespace eoe::trace_tool
