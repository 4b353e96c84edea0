#pragma once
// One expert layer of the training math (eoe, router, hash or dense) on its (T, D) input:
// the forward that keeps a tape, and the backward through the FFNs, the gates, the
// self-activation scores (gradients reach A through the score norm and the softmax gates)
// and the router with its balance loss and z-loss. The classifier (experts/train/backprop.hpp) and
// the language model stack these (experts/train/backprop.hpp).
//
// Scalar-generic: float for training, double for the finite-difference checks.

#include "experts/nn/activation_set.hpp"
#include "experts/model/model.hpp"
#include "experts/nn/router.hpp"
#include "experts/nn/score_balance.hpp"
#include "experts/nn/weighted_output.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// What the loss adds beyond cross-entropy.
struct loss_options {
  double balance_coef = 0.0;    ///< weight of each router layer's Switch balance loss
  double z_coef = 0.0;          ///< weight of each router layer's z-loss
  /// Weight of each EoE top-k layer's Switch balance loss on the softmax of its experts'
  /// self-scores (experts/nn/score_balance.hpp).
  double score_balance_coef = 0.0;
  double label_smoothing = 0.0; ///< target = (1 - e) one-hot + e / classes
  /// Dropout on the experts' hidden activations (inverted: kept units are scaled by
  /// 1 / (1 - p)). The mask is a function of dropout_seed, the layer, the expert and the row,
  /// so a step is reproducible and finite differences see the same mask.
  double dropout = 0.0;
  std::uint64_t dropout_seed = 0;
};

/// One unrolled expert layer as the training forward saw it.
template <class S>
struct layer_trace {
  size_t config_layer = 0;
  basic_matrix<S> scores;         ///< (T, E) eoe self-scores, router probabilities; else empty
  basic_activation_set<S> active; ///< the active experts and gates per token
};

/// What one expert computed, kept for its backward.
template <class S>
struct expert_tape {
  std::vector<std::int32_t> rows;
  std::vector<S> gates;  ///< (n)
  basic_matrix<S> first_in; ///< (n, r) u rows when factored, else (n, D) input rows
  basic_matrix<S> z;     ///< (n, H) before the activation
  basic_matrix<S> act;   ///< (n, H) after it (and after dropout)
  basic_matrix<S> keep;  ///< (n, H) dropout mask, 0 or 1 / (1 - p); empty without dropout
  basic_matrix<S> y;     ///< (n, D) the output before gating
};

/// What one expert layer computed, kept for its backward.
template <class S>
struct expert_layer_tape {
  std::vector<basic_matrix<S>> u;            ///< eoe: x A per expert (T, r)
  basic_router_decision<S> router;           ///< router layers
  basic_score_balance<S> balance;            ///< eoe top-k layers with a score balance loss
  std::vector<expert_tape<S>> experts;
  std::vector<basic_weighted_output<S>> out; ///< g y per expert: what the layer adds
};

/// The forward of one expert layer. inputs: one (T, D) matrix that every expert reads, or
/// (eoe with affinity) one per expert. token_ids (T) feed hash layers, hashed with
/// hash_seed; `unrolled` (the layer's index as run) keys the dropout masks. Fills tape and
/// trace; returns the layer's weighted auxiliary loss (router: balance and z-loss; eoe top-k:
/// the score balance loss).
template <class S>
S expert_layer_forward(const basic_layer_params<S>& lp, const layer_config& lc,
                       std::span<const basic_matrix<S>* const> inputs,
                       std::span<const std::uint64_t> token_ids, std::uint64_t hash_seed,
                       const loss_options& opt, size_t unrolled, expert_layer_tape<S>& tape,
                       layer_trace<S>& trace);

/// The backward of expert_layer_forward. dout[e] (rows of expert e, D): d loss / d expert e's
/// g y rows. Adds the parameter gradients to gp and d loss / d inputs[i] to d_inputs[i]
/// (T, D) (one per input).
template <class S>
void expert_layer_backward(const basic_layer_params<S>& lp, const layer_config& lc,
                           std::span<const basic_matrix<S>* const> inputs,
                           const expert_layer_tape<S>& tape, const layer_trace<S>& trace,
                           const std::vector<basic_matrix<S>>& dout, const loss_options& opt,
                           basic_layer_params<S>& gp, std::span<basic_matrix<S>* const> d_inputs);

/// (rows, D) gradient blocks shaped like a layer's outputs, all zero.
template <class S>
std::vector<basic_matrix<S>> zero_grads_like(const std::vector<basic_weighted_output<S>>& cs) {
  std::vector<basic_matrix<S>> g(cs.size());
  for (size_t i = 0; i < cs.size(); ++i)
    g[i] = basic_matrix<S>::Zero(cs[i].values.rows(), cs[i].values.cols());
  return g;
}

/// d loss / d each of a layer's outputs: the rows of d (d loss / d the stream the outputs add
/// to) at the rows each output adds to.
template <class S>
std::vector<basic_matrix<S>> gather_grads(const basic_matrix<S>& d,
                                          const std::vector<basic_weighted_output<S>>& cs) {
  auto g = zero_grads_like(cs);
  for (size_t i = 0; i < cs.size(); ++i)
    for (size_t r = 0; r < cs[i].rows.size(); ++r)
      g[i].row(static_cast<Eigen::Index>(r)) = d.row(cs[i].rows[r]);
  return g;
}

} // namespace eoe::experts
