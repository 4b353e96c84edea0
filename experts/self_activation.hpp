#pragma once
// Self-activation of EoE experts: every expert scores itself, and the decision to compute is
// the expert's own. Central selections here and the per-expert rule give the same answer, so
// a distributed expert that knows its layer peers' scores decides exactly as the reference.

#include "experts/activation_set.hpp"
#include "kernels/tensor.hpp"

#include <span>

namespace eoe::experts {

/// Expert e's rank on one token: how many experts beat it, where a higher score beats a lower
/// one and on equal scores the lower index wins. scores: (E) of that token.
int topk_rank(std::span<const float> scores, int e) noexcept;

/// The per-expert topk rule: active iff fewer than k experts beat it.
inline bool active_in_topk(std::span<const float> scores, int e, int k) noexcept {
  return topk_rank(scores, e) < k;
}

/// The per-expert threshold rule: active iff the score exceeds tau (strictly).
inline bool active_over_threshold(float score, float tau) noexcept {
  return score > tau;
}

/// Gate weights of the active experts of one token: softmax over their scores.
/// scores: (n) of the active experts -> gates (n), summing to 1.
void softmax_gates(std::span<const float> scores, std::span<float> gates) noexcept;

/// topk mode. scores: (T, E) -> per token the k best experts by topk_rank, gated.
activation_set select_topk(const matrix& scores, int k);

/// threshold mode. scores: (T, E), tau: (E) -> per token the experts over their threshold,
/// gated; a token may have none (it then passes through by the residual).
activation_set select_threshold(const matrix& scores, std::span<const float> tau);

} // namespace eoe::experts
