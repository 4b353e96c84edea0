#pragma once
// The in-process reference forward of a model: what the actor mesh must reproduce exactly.
//
//   h_0 = embed(x)
//   layer l: expert j reads u_j = h_{l-1} + sum_i a_ij g_i y_i over layer l-1's active
//            experts i (a = 1 without affinity, so u_j = h_l); it scores itself, and the active
//            ones contribute g_j y_j(u_j)
//   h_{l+1} = h_l + sum_j g_j y_j       (a token with no active expert passes through)
//   output = head(h_L)

#include "experts/nn/activation_set.hpp"
#include "experts/base/error.hpp"
#include "experts/model/model.hpp"
#include "experts/nn/weighted_output.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// The seed of the hash layer run as the `unrolled`-th layer: the model seed plus that index.
inline std::uint64_t hash_seed(const model_config& c, size_t unrolled) noexcept {
  return c.seed + unrolled;
}

/// What one layer did on a batch (one record per layer as run: a recurrent layer has one per
/// step).
struct layer_record {
  layer_kind kind = layer_kind::eoe;
  /// (T, E): eoe self-scores (the norm of the scoring columns of x A, or of x W1), router
  /// probabilities; empty for hash and dense layers.
  matrix scores;
  activation_set active; ///< per token the active experts and their gates
  float balance_loss = 0.0f; ///< router layers: Switch load-balancing loss
  float z_loss = 0.0f;       ///< router layers: router z-loss
};

/// The output (T, classes or dim) and every unrolled layer's activation record.
struct forward_result {
  matrix output;
  std::vector<layer_record> layers;
};

/// One expert layer (eoe, router, hash or dense) of the reference forward. inputs: one
/// (T, D) matrix that every expert reads, or (eoe with affinity) one per expert; token_ids (T)
/// feed hash layers, hashed with `seed`. out: every expert's g y on its active rows (what the
/// layer adds to the stream); rec: what the layer decided.
void expert_layer(kernels::backend& be, const layer_params& lp, const layer_config& lc,
                  std::span<const matrix* const> inputs, std::span<const std::uint64_t> token_ids,
                  std::uint64_t seed, std::vector<weighted_output>& out, layer_record& rec);

/// The head over the final stream h (N, D): a language model's logits (through its final
/// RMSNorm), a classifier's logits, or h itself for a model without a head. The one head of
/// the reference forward, the language model's layer loop and the mesh's composer.
matrix model_head(kernels::backend& be, const model& m, matrix h);

/// A classifier's forward: x (T, input_dim or dim) -> result. token_ids (T) feed hash layers; empty: the row index.
expected<forward_result> forward(kernels::backend& be, const model& m, const matrix& x,
                                 std::span<const std::uint64_t> token_ids = {});

} // namespace eoe::experts
