#pragma once
// The in-process reference forward of a language model over whole sequences: what training
// computes (tested) and what the decoder (experts/model/lm_decode.hpp) computes one token at a time.
//
//   h = embed.w[token]                        (N, D)
//   every layer as run: h += layer(rmsnorm(h) * norm)     (pre-norm residual branches)
//     attention: causal multi-head self-attention with RoPE (experts/nn/attention.hpp)
//     eoe | dense | router | hash: the expert layer of experts/model/forward.hpp on each token
//   logits = (rmsnorm(h) * head.norm) head.w + head.b    (N, vocab)

#include "experts/base/error.hpp"
#include "experts/model/forward.hpp"
#include "experts/model/model.hpp"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace eoe::experts {

/// Next-token logits and what every expert layer decided.
struct lm_forward_result {
  matrix logits; ///< (N, vocab): row r scores the token that follows input token r
  std::vector<layer_record> layers; ///< one per expert layer as run (attention layers: none)
};

/// Hash layers hash the tokens themselves (the bytes), with hash_seed(c, u) for the u-th expert
/// layer as run (attention layers are not counted).
///
/// tokens (N) = N / seq_len sequences of seq_len tokens each, every sequence starting at
/// position 0 (seq_len 0: one sequence of N) -> logits (N, vocab). seq_len may not exceed the
/// model's context; every token must be below vocab.
expected<lm_forward_result> lm_forward(kernels::backend& be, const model& m,
                                       std::span<const std::uint8_t> tokens,
                                       Eigen::Index seq_len = 0);

/// Adds attention layer `layer`'s output over `normed` (the stream through the layer's RMSNorm)
/// to the stream h: over whole sequences (lm_forward) or over a decoder's KV shards.
using attend_fn = std::function<void(size_t layer, const matrix& normed, matrix& h)>;

/// The language model's layers and head over the stream h (N, D), which they change: every
/// layer as run adds its branch over rmsnorm(h) to h (attention by `attend`, expert layers with
/// hash ids `ids`, their records appended to `records` when given); returns the logits. The one
/// layer loop of lm_forward and of the decoder (experts/model/lm_decode.hpp).
matrix lm_layers_and_head(kernels::backend& be, const model& m, matrix& h,
                          std::span<const std::uint64_t> ids, const attend_fn& attend,
                          std::vector<layer_record>* records);

/// Checks a language model's input: tokens below vocab, whole sequences of at most context.
expected<void> check_lm_input(const model_config& c, std::span<const std::uint8_t> tokens,
                              Eigen::Index seq_len);

} // namespace eoe::experts
