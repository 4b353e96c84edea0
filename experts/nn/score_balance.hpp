#pragma once
// The load-balancing loss of an EoE top-k layer, on the experts' own scores: the Switch loss
// E * sum_e f_e P_e, where f_e is the share of the layer's T * k assignments that went to
// expert e and P_e the mean over tokens of softmax(scores)(t, e). The router baseline has the
// same loss on its router's probabilities (experts/nn/router.hpp); here the softmax is over the
// self-scores every top-k expert shares with its peers anyway, so no router is involved. Its
// gradient reaches every expert's score on every token, the unselected ones too (the gates
// only reach the selected ones). f is a count: it carries no gradient.

#include "experts/nn/activation_set.hpp"
#include "kernels/tensor.hpp"

#include <cmath>
#include <vector>

namespace eoe::experts {

/// What the loss needs for its backward.
template <class S>
struct basic_score_balance {
  basic_matrix<S> probs; ///< (T, E) softmax of each token's scores over the layer's experts
  std::vector<S> load;   ///< (E) f_e
  S loss = 0;            ///< E sum_e f_e P_e: 1 when the probabilities are uniform
};

/// scores (T, E) and the layer's selection -> the loss and what its backward needs. A batch
/// without tokens or assignments has loss 0.
template <class S>
basic_score_balance<S> score_balance(const basic_matrix<S>& scores,
                                     const basic_activation_set<S>& active) {
  const auto tokens = scores.rows(), experts = scores.cols();
  basic_score_balance<S> b;
  b.probs.resize(tokens, experts);
  b.load.assign(static_cast<size_t>(experts), S{0});
  for (Eigen::Index t = 0; t < tokens; ++t) {
    const S m = scores.row(t).maxCoeff();
    S sum = 0;
    for (Eigen::Index e = 0; e < experts; ++e)
      sum += b.probs(t, e) = std::exp(scores(t, e) - m);
    b.probs.row(t) /= sum;
  }
  if (tokens == 0 || active.experts.empty())
    return b;
  for (auto e : active.experts)
    b.load[static_cast<size_t>(e)] += S{1};
  const auto assignments = static_cast<S>(active.experts.size());
  for (Eigen::Index e = 0; e < experts; ++e) {
    b.load[e] /= assignments;
    b.loss += b.load[e] * b.probs.col(e).mean();
  }
  b.loss *= static_cast<S>(experts);
  return b;
}

/// dscores (T, E) += d (coef * loss) / d scores: d loss / d P_te = E f_e / T, through the
/// softmax: p_te (E f_e / T - sum_j p_tj E f_j / T).
template <class S>
void add_score_balance_gradient(const basic_score_balance<S>& b, S coef,
                                basic_matrix<S>& dscores) {
  const auto tokens = b.probs.rows(), experts = b.probs.cols();
  if (tokens == 0)
    return;
  const S scale = coef * static_cast<S>(experts) / static_cast<S>(tokens);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    S dot = 0;
    for (Eigen::Index e = 0; e < experts; ++e)
      dot += b.load[e] * b.probs(t, e);
    for (Eigen::Index e = 0; e < experts; ++e)
      dscores(t, e) += scale * b.probs(t, e) * (b.load[e] - dot);
  }
}

} // namespace eoe::experts
