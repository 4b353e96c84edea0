#pragma once
// What the gateway counts, rendered in the Prometheus text format (version 0.0.4): requests by
// outcome, a latency histogram, activations per layer and expert, requests in flight and
// waiting, HTTP responses by code; completions' time to first token, inter-token latency,
// end-to-end latency and token counts; and at scrape time, from the cluster, messages and
// bytes per edge kind, open and running sessions, KV positions per node and tokens per step.

#include "actors/messages.hpp"
#include "actors/plan.hpp"

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

  void waiting(std::int64_t n);

  /// A completion's choice sampled its first byte `seconds` after the request came; a later
  /// byte `seconds` after the one before.
  void first_token(double seconds);
  void inter_token(double seconds);
  /// A completion request ended: its outcome, latency and tokens.
  void completion_done(const std::string& outcome, double seconds, std::uint64_t prompt_tokens,
                       std::uint64_t generated_tokens);

  /// The text, with the cluster's status (nullptr: unknown) and the relays' counters by node
  /// (in the status's node order).
  std::string render(const actors::cluster_status* status,
                     const std::vector<actors::relay_stats>& relays) const;

  static constexpr std::array<double, 14> buckets{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                                  0.2,   0.5,   1,     2,    5,    10,  30};

  /// A latency histogram (cumulative when rendered).
  struct histogram {
    std::array<std::uint64_t, buckets.size() + 1> counts{};
    double sum = 0;
    std::uint64_t count = 0;
    void observe(double seconds);
  };

private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> outcomes_;
  histogram latency_;
  std::map<std::string, std::uint64_t> completions_;
  histogram ttft_, itl_, e2e_;
  std::uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  std::int64_t waiting_ = 0;
  std::map<std::pair<std::uint32_t, std::int32_t>, std::uint64_t> activations_;
  std::map<unsigned, std::uint64_t> codes_;
  std::int64_t in_flight_ = 0;
};

} // namespace eoe::net
