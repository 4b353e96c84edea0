#include "experts/router.hpp"

#include "experts/self_activation.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

namespace eoe::experts {

router_decision route_topk(const matrix& logits, int k) {
  const auto n = logits.rows(), experts = logits.cols();
  if (k < 1 || k > experts)
    throw std::invalid_argument("route_topk: k must be in 1..experts");
  router_decision d;
  d.probs.resize(n, experts);
  std::vector<double> load(experts, 0.0), mean_prob(experts, 0.0);
  double z = 0.0;
  std::vector<std::int32_t> es;
  std::vector<float> gs;
  for (Eigen::Index t = 0; t < n; ++t) {
    const float m = logits.row(t).maxCoeff();
    double sum = 0.0;
    for (Eigen::Index e = 0; e < experts; ++e)
      sum += std::exp(static_cast<double>(logits(t, e) - m));
    const double lse = m + std::log(sum);
    z += lse * lse;
    for (Eigen::Index e = 0; e < experts; ++e) {
      d.probs(t, e) = static_cast<float>(std::exp(logits(t, e) - lse));
      mean_prob[e] += d.probs(t, e);
    }
    std::span<const float> row{d.probs.data() + t * experts, static_cast<size_t>(experts)};
    es.clear();
    gs.clear();
    float picked = 0.0f;
    for (int e = 0; e < experts; ++e)
      if (active_in_topk(row, e, k)) {
        es.push_back(e);
        gs.push_back(row[e]);
        picked += row[e];
        load[e] += 1.0;
      }
    if (k > 1)
      for (auto& g : gs)
        g /= picked;
    d.active.push_token(es, gs);
  }
  if (n > 0) {
    double bal = 0.0;
    for (Eigen::Index e = 0; e < experts; ++e)
      bal += (load[e] / (static_cast<double>(n) * k)) * (mean_prob[e] / n);
    d.balance_loss = static_cast<float>(experts * bal);
    d.z_loss = static_cast<float>(z / n);
  }
  return d;
}

} // namespace eoe::experts
