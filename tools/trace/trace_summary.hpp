#pragma once
// What a trace says: per edge (sender -> receiver, message kind) the messages, bytes and
// wire latency percentiles; per expert and layer how often it activated; and the critical
// path of one request (the chain of hops and in-actor waits that decided when it finished).

#include "trace_log.hpp"

#include <iosfwd>

namespace eoe::trace_tool {

struct edge_stats {
  std::string from, to, name;
  size_t count = 0;
  std::uint64_t bytes = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;
};

struct expert_activity {
  std::string actor;
  std::int32_t layer = -1;  ///< unrolled layer
  std::int32_t expert = -1; ///< stable id
  size_t decisions = 0, activations = 0;
  std::uint64_t tokens_seen = 0, tokens_active = 0;
};

struct path_step {
  bool wire = false;   ///< a message in flight (else: time spent inside `actor`)
  std::string actor;   ///< where the time went (the receiver, for a wire step)
  std::string what;    ///< "contrib from expert 0.1", "in expert 1.2"
  std::int64_t from_ns = 0, to_ns = 0;
};

/// Edges sorted by sender, receiver and kind; experts by layer and id.
std::vector<edge_stats> edges_of(const trace_log& log, const message_match& m);
std::vector<expert_activity> activity_of(const trace_log& log);

/// The critical path of the single trace in `log` (the caller filters with only_trace), from
/// the first event to the answer's arrival, in time order.
std::vector<path_step> critical_path(const trace_log& log, const message_match& m);

/// The whole summary as text; the critical path of `trace` (0: the first trace in the log).
void print_summary(std::ostream& out, const trace_log& log, std::uint64_t trace);

} // namespace eoe::trace_tool
