#pragma once
// The weights of one causal self-attention layer (experts/nn/attention.hpp has its math).

#include "kernels/tensor.hpp"

namespace eoe::experts {

/// Q, K, V and output projections of multi-head attention, all (D, D): head h owns columns
/// [h * D / heads, (h + 1) * D / heads) of wq, wk, wv and the same rows of wo. No biases.
template <class S>
struct basic_attention_params {
  basic_matrix<S> wq; ///< (D, D)
  basic_matrix<S> wk; ///< (D, D)
  basic_matrix<S> wv; ///< (D, D)
  basic_matrix<S> wo; ///< (D, D)
};

using attention_params = basic_attention_params<float>;

} // namespace eoe::experts
