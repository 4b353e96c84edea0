#pragma once
// One FFN expert D -> H -> D. An EoE expert factors its first projection as A (D, r) B (r, H)
// (Autonomy-of-Experts): u = x A is cheap, ||u|| is the expert's score of itself, and only an
// active expert goes on to act(u B + b1) W2 + b2. An EoE expert that is not factored scores
// itself with the norm of its first few pre-activations, x W1[:, :n], and an active one runs
// the whole act(x W1 + b1) W2 + b2.

#include "kernels/backend.hpp"

namespace eoe::experts {

/// The weights of one expert. w1 is B (r, H) when factored, else the whole W1 (D, H).
template <class S>
struct basic_ffn_expert {
  basic_matrix<S> a;  ///< (D, r) AoE factor; empty when not factored
  basic_matrix<S> w1; ///< (r, H) or (D, H)
  basic_matrix<S> b1; ///< (1, H), or empty without bias
  basic_matrix<S> w2; ///< (H, D)
  basic_matrix<S> b2; ///< (1, D), or empty without bias

  bool factored() const noexcept {
    return a.size() != 0;
  }
};

using ffn_expert = basic_ffn_expert<float>;

/// Self-score of an EoE expert on x (T, D), the norm of the first `columns` columns of its
/// first projection. Factored: u = x A (T, r), what the rest of the expert reads, and
/// scores = ||u[:, :columns]||. Not factored: scores = ||x W1[:, :columns]||, u untouched
/// (the rest of the expert reads x itself).
void expert_scores(kernels::backend& be, const ffn_expert& w, int columns, const matrix& x,
                   matrix& u, vector& scores);

/// The rest of the FFN on the rows that are active. in (n, r) = u rows when factored, else
/// x rows (n, D) -> y (n, D) = act(in w1 + b1) w2 + b2. `hidden` is scratch (n, H).
void expert_forward(kernels::backend& be, const ffn_expert& w, kernels::activation act,
                    const matrix& in, matrix& hidden, matrix& y);

} // namespace eoe::experts
