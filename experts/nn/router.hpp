#pragma once
// The softmax top-k router baseline (Switch Transformer, GShard): a learned router picks the
// experts; its load-balancing loss and z-loss are computed on the forward.

#include "experts/nn/activation_set.hpp"
#include "experts/nn/self_activation.hpp"
#include "kernels/tensor.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

namespace eoe::experts {

/// What the router decided for a batch of tokens.
template <class S>
struct basic_router_decision {
  basic_activation_set<S> active; ///< per token the k most probable experts (ties: lower index)
  basic_matrix<S> probs;          ///< (T, E) softmax of the router logits
  std::vector<S> lse;             ///< (T) logsumexp of each token's logits
  std::vector<S> load;            ///< (E) f_e: share of the T*k assignments that went to e
  /// Switch load-balancing loss E * sum_e f_e P_e, P_e the mean router probability of e;
  /// 1 when uniform.
  S balance_loss = 0;
  /// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2.
  S z_loss = 0;
};

using router_decision = basic_router_decision<float>;

/// logits (T, E) -> decision. Gates: for k = 1 the router probability itself (Switch), for
/// k > 1 the k probabilities renormalised to sum to 1 (GShard).
template <class S>
basic_router_decision<S> route_topk(const basic_matrix<S>& logits, int k) {
  const auto n = logits.rows(), experts = logits.cols();
  if (k < 1 || k > experts)
    throw std::invalid_argument("route_topk: k must be in 1..experts");
  basic_router_decision<S> d;
  d.probs.resize(n, experts);
  d.lse.resize(static_cast<size_t>(n));
  d.load.assign(static_cast<size_t>(experts), S{0});
  std::vector<double> mean_prob(static_cast<size_t>(experts), 0.0);
  double z = 0.0;
  std::vector<std::int32_t> es;
  std::vector<S> gs;
  for (Eigen::Index t = 0; t < n; ++t) {
    const S m = logits.row(t).maxCoeff();
    double sum = 0.0;
    for (Eigen::Index e = 0; e < experts; ++e)
      sum += std::exp(static_cast<double>(logits(t, e) - m));
    const double lse = m + std::log(sum);
    d.lse[t] = static_cast<S>(lse);
    z += lse * lse;
    for (Eigen::Index e = 0; e < experts; ++e) {
      d.probs(t, e) = static_cast<S>(std::exp(logits(t, e) - lse));
      mean_prob[e] += d.probs(t, e);
    }
    std::span<const S> row{d.probs.data() + t * experts, static_cast<size_t>(experts)};
    es.clear();
    gs.clear();
    S picked = 0;
    for (int e = 0; e < experts; ++e)
      if (active_in_topk(row, e, k)) {
        es.push_back(e);
        gs.push_back(row[e]);
        picked += row[e];
        d.load[e] += 1;
      }
    if (k > 1)
      for (auto& g : gs)
        g /= picked;
    d.active.push_token(es, gs);
  }
  if (n > 0) {
    double bal = 0.0;
    for (Eigen::Index e = 0; e < experts; ++e) {
      d.load[e] /= static_cast<S>(n * k);
      bal += d.load[e] * (mean_prob[e] / n);
    }
    d.balance_loss = static_cast<S>(experts * bal);
    d.z_loss = static_cast<S>(z / n);
  }
  return d;
}

} // namespace eoe::experts
