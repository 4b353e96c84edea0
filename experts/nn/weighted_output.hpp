#pragma once
// An expert's gated output g y on the tokens it was active on, how a receiver computes the
// gates from what the senders carry, and how outputs add into the residual stream. The
// reference forward and the actor mesh both use these, so they add the same floats in the
// same order.

#include "experts/base/model_config.hpp"
#include "kernels/tensor.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// One expert's g * y on the rows it was active on.
template <class S>
struct basic_weighted_output {
  std::vector<std::int32_t> rows; ///< token indices, ascending
  basic_matrix<S> values;         ///< (rows, D): g * y per row
};

using weighted_output = basic_weighted_output<float>;

/// The gates of the experts active on one token, from what each carries (ascending expert
/// order): eoe: softmax of their scores; router: k = 1 the router probability itself, k > 1
/// the probabilities renormalised; hash: 1/k each; dense: 1.
void token_gates(const layer_config& sending, std::span<const float> carried,
                 std::span<float> gates);

/// What one sender's message holds: its active rows, the value it carries per row, and its
/// output y (rows, D) before gating.
struct sender_output {
  std::span<const std::int32_t> rows;
  std::span<const float> carried;
  const matrix* y = nullptr;
};

/// The receiver's view of a whole sending layer: every sender's g * y, gates from token_gates.
/// senders: one per expert of the sending layer, in index order.
std::vector<weighted_output> gate_outputs(const layer_config& sending,
                                          std::span<const sender_output> senders,
                                          size_t tokens);

/// h (T, D) += w_i * values_i on their rows for every sender i in order; weights: null for
/// all ones, else weight of sender i at weights[i * stride].
template <class S>
void scatter_add(basic_matrix<S>& h, const std::vector<basic_weighted_output<S>>& outs,
                 const S* weights = nullptr, Eigen::Index stride = 0) {
  for (size_t i = 0; i < outs.size(); ++i) {
    const S w = weights ? weights[static_cast<Eigen::Index>(i) * stride] : S{1};
    const auto& o = outs[i];
    for (size_t r = 0; r < o.rows.size(); ++r)
      h.row(o.rows[r]) += w * o.values.row(static_cast<Eigen::Index>(r));
  }
}

} // namespace eoe::experts
