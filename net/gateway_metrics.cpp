#include "net/gateway_metrics.hpp"

#include <cstdio>
#include <cstring>

namespace eoe::net {

namespace {

/// A Prometheus label value: backslash, quote and newline escaped.
std::string label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

} // namespace

void gateway_metrics::request_done(const std::string& outcome, double seconds,
                                   const actors::infer_result* r) {
  std::lock_guard lock{mu_};
  ++outcomes_[outcome];
  size_t b = 0;
  while (b < buckets.size() && seconds > buckets[b])
    ++b;
  ++latency_[b];
  latency_sum_ += seconds;
  ++latency_count_;
  if (!r)
    return;
  for (std::uint32_t l = 0; l < r->layers.size(); ++l) {
    const auto& e = r->layers[l].experts;
    for (size_t i = 0; i + 4 <= e.size(); i += 4) {
      std::int32_t x;
      std::memcpy(&x, e.data() + i, 4);
      ++activations_[{l, x}];
    }
  }
}

void gateway_metrics::http_response(unsigned code) {
  std::lock_guard lock{mu_};
  ++codes_[code];
}

void gateway_metrics::in_flight(std::int64_t n) {
  std::lock_guard lock{mu_};
  in_flight_ = n;
}

std::string gateway_metrics::render(const std::vector<std::string>& nodes,
                                    const std::vector<actors::relay_stats>& relays) const {
  std::lock_guard lock{mu_};
  std::string out;
  char line[256];
  out += "# HELP eoe_requests_total Inference requests answered, by outcome.\n"
         "# TYPE eoe_requests_total counter\n";
  for (auto& [o, n] : outcomes_) {
    std::snprintf(line, sizeof line, "eoe_requests_total{outcome=\"%s\"} %llu\n", o.c_str(),
                  static_cast<unsigned long long>(n));
    out += line;
  }
  out += "# HELP eoe_request_seconds Latency of inference requests through the gateway.\n"
         "# TYPE eoe_request_seconds histogram\n";
  std::uint64_t cumulative = 0;
  for (size_t b = 0; b <= buckets.size(); ++b) {
    cumulative += latency_[b];
    if (b < buckets.size())
      std::snprintf(line, sizeof line, "eoe_request_seconds_bucket{le=\"%g\"} %llu\n", buckets[b],
                    static_cast<unsigned long long>(cumulative));
    else
      std::snprintf(line, sizeof line, "eoe_request_seconds_bucket{le=\"+Inf\"} %llu\n",
                    static_cast<unsigned long long>(cumulative));
    out += line;
  }
  std::snprintf(line, sizeof line, "eoe_request_seconds_sum %.6f\neoe_request_seconds_count %llu\n",
                latency_sum_, static_cast<unsigned long long>(latency_count_));
  out += line;
  out += "# HELP eoe_expert_activations_total Tokens each expert took, by unrolled layer and "
         "position in the epoch's membership.\n# TYPE eoe_expert_activations_total counter\n";
  for (auto& [k, n] : activations_) {
    std::snprintf(line, sizeof line, "eoe_expert_activations_total{layer=\"%u\",expert=\"%d\"} %llu\n",
                  k.first, k.second, static_cast<unsigned long long>(n));
    out += line;
  }
  out += "# HELP eoe_requests_in_flight Inference requests the gateway is waiting on.\n"
         "# TYPE eoe_requests_in_flight gauge\n";
  std::snprintf(line, sizeof line, "eoe_requests_in_flight %lld\n", static_cast<long long>(in_flight_));
  out += line;
  out += "# HELP eoe_http_responses_total HTTP responses, by status code.\n"
         "# TYPE eoe_http_responses_total counter\n";
  for (auto& [c, n] : codes_) {
    std::snprintf(line, sizeof line, "eoe_http_responses_total{code=\"%u\"} %llu\n", c,
                  static_cast<unsigned long long>(n));
    out += line;
  }
  out += "# HELP eoe_relay_messages_total Mesh messages into each node's relay, by edge kind.\n"
         "# TYPE eoe_relay_messages_total counter\n";
  for (size_t i = 0; i < relays.size() && i < nodes.size(); ++i) {
    const auto& r = relays[i];
    const auto name = label(nodes[i]);
    const char* n = name.c_str();
    std::snprintf(line, sizeof line,
                  "eoe_relay_messages_total{node=\"%s\",kind=\"remote\"} %llu\n"
                  "eoe_relay_messages_total{node=\"%s\",kind=\"local\"} %llu\n"
                  "eoe_relay_messages_total{node=\"%s\",kind=\"delivery\"} %llu\n",
                  n, static_cast<unsigned long long>(r.remote_messages), n,
                  static_cast<unsigned long long>(r.local_messages), n,
                  static_cast<unsigned long long>(r.deliveries));
    out += line;
  }
  out += "# HELP eoe_relay_remote_bytes_total Tensor and vector bytes into each node from others.\n"
         "# TYPE eoe_relay_remote_bytes_total counter\n";
  for (size_t i = 0; i < relays.size() && i < nodes.size(); ++i) {
    std::snprintf(line, sizeof line, "eoe_relay_remote_bytes_total{node=\"%s\"} %llu\n",
                  label(nodes[i]).c_str(), static_cast<unsigned long long>(relays[i].remote_bytes));
    out += line;
  }
  return out;
}

} // namespace eoe::net
