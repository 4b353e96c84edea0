#pragma once
// The softmax top-k router baseline (Switch Transformer, GShard): a learned router picks the
// experts; its load-balancing loss and z-loss are computed on the forward.

#include "experts/activation_set.hpp"
#include "kernels/tensor.hpp"

namespace eoe::experts {

/// What the router decided for a batch of tokens.
struct router_decision {
  activation_set active; ///< per token the k most probable experts (ties to the lower index)
  matrix probs;          ///< (T, E) softmax of the router logits
  /// Switch load-balancing loss E * sum_e f_e P_e, where f_e is the share of the T*k
  /// assignments that went to e and P_e the mean router probability of e; 1 when uniform.
  float balance_loss = 0.0f;
  /// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2.
  float z_loss = 0.0f;
};

/// logits (T, E) -> decision. Gates: for k = 1 the router probability itself (Switch), for
/// k > 1 the k probabilities renormalised to sum to 1 (GShard).
router_decision route_topk(const matrix& logits, int k);

} // namespace eoe::experts
