#pragma once
// What the gateway counts, rendered in the Prometheus text format (version 0.0.4): requests by
// outcome, a latency histogram, activations per layer and expert, requests in flight, HTTP
// responses by code, and (at scrape time, from the relays) messages and bytes per edge kind.

#include "actors/messages.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace eoe::net {

class gateway_metrics {
public:
  /// One answered /v1/infer: its outcome ("ok", "bad_request", "deadline_exceeded", ...), its
  /// latency and, when ok, the activations of its record.
  void request_done(const std::string& outcome, double seconds, const actors::infer_result* r);
  void http_response(unsigned code);
  void in_flight(std::int64_t n);

  /// The text, with the relays' counters by node (node names in the same order).
  std::string render(const std::vector<std::string>& nodes,
                     const std::vector<actors::relay_stats>& relays) const;

  static constexpr std::array<double, 14> buckets{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                                  0.2,   0.5,   1,     2,    5,    10,  30};

private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> outcomes_;
  std::array<std::uint64_t, buckets.size() + 1> latency_{};
  double latency_sum_ = 0;
  std::uint64_t latency_count_ = 0;
  std::map<std::pair<std::uint32_t, std::int32_t>, std::uint64_t> activations_;
  std::map<unsigned, std::uint64_t> codes_;
  std::int64_t in_flight_ = 0;
};

} // namespace eoe::net
