#include "experts/self_activation.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace eoe::experts {

int topk_rank(std::span<const float> scores, int e) noexcept {
  const float s = scores[e];
  int rank = 0;
  for (int j = 0; j < static_cast<int>(scores.size()); ++j)
    rank += scores[j] > s || (scores[j] == s && j < e);
  return rank;
}

void softmax_gates(std::span<const float> scores, std::span<float> gates) noexcept {
  if (scores.empty())
    return;
  const float m = *std::max_element(scores.begin(), scores.end());
  float sum = 0.0f;
  for (size_t i = 0; i < scores.size(); ++i)
    sum += gates[i] = std::exp(scores[i] - m);
  for (auto& g : gates)
    g /= sum;
}

namespace {

/// Builds the activation set from a per-(token, expert) membership rule.
template <class IsActive>
activation_set select(const matrix& scores, IsActive&& is_active) {
  const auto n = scores.rows(), experts = scores.cols();
  activation_set out;
  out.offsets.reserve(n + 1);
  std::vector<std::int32_t> es;
  std::vector<float> ss, gs;
  for (Eigen::Index t = 0; t < n; ++t) {
    std::span<const float> row{scores.data() + t * experts, static_cast<size_t>(experts)};
    es.clear();
    ss.clear();
    for (int e = 0; e < experts; ++e)
      if (is_active(row, e)) {
        es.push_back(e);
        ss.push_back(row[e]);
      }
    gs.resize(es.size());
    softmax_gates(ss, gs);
    out.push_token(es, gs);
  }
  return out;
}

} // namespace

activation_set select_topk(const matrix& scores, int k) {
  if (k < 1 || k > scores.cols())
    throw std::invalid_argument("select_topk: k must be in 1..experts");
  return select(scores, [k](std::span<const float> row, int e) {
    return active_in_topk(row, e, k);
  });
}

activation_set select_threshold(const matrix& scores, std::span<const float> tau) {
  if (static_cast<Eigen::Index>(tau.size()) != scores.cols())
    throw std::invalid_argument("select_threshold: one tau per expert");
  return select(scores, [tau](std::span<const float> row, int e) {
    return active_over_threshold(row[e], tau[e]);
  });
}

} // namespace eoe::experts
