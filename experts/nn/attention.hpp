#pragma once
// Causal multi-head self-attention with rotary position embeddings (RoPE), the training
// forward and backward (scalar-generic: float to train, double for the finite-difference
// checks), and the decode step whose keys and values live in context_store KV shards.
//
// Positions: RoPE (Su et al. 2021) rather than learned position embeddings. It rotates each
// head's (2i, 2i+1) pair of query and key dimensions by position * theta_i, so q . k depends
// on the two positions only through their distance; keys go into a KV shard already rotated
// by their own position, and a shard answers any later query without knowing where it
// stands, nor needing a table sized by the longest context. No parameters.
//
// Shapes: x (N, D) holds N / T sequences of T rows each, row r of a sequence at position r;
// heads of width d = D / heads; head h owns columns [h d, (h + 1) d).

#include "experts/nn/attention_params.hpp"
#include "experts/base/model_config.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::context {
class kv_shard;
} // namespace eoe::context

namespace eoe::experts {

/// cos and sin of the RoPE angles of positions [first, first + n): (n, d / 2) each, angle of
/// row r, pair i = (first + r) * base^(-2i / d). Computed in double, then rounded to S, so the
/// training forward and the decode step rotate by the same numbers.
template <class S>
struct rope_table {
  basic_matrix<S> cos, sin;
};

template <class S>
rope_table<S> make_rope(std::int64_t first, Eigen::Index n, int head_dim, double base);

/// Rotates every head of x (n, D) in place, row r by the angles of table row r: pair
/// (x_2i, x_2i+1) -> (x_2i c - x_2i+1 s, x_2i s + x_2i+1 c). inverse: by minus the angles,
/// which is also the backward (the rotation is orthogonal).
template <class S>
void apply_rope(basic_matrix<S>& x, int heads, const rope_table<S>& t, bool inverse = false);

/// What the forward keeps for the backward.
template <class S>
struct attention_tape {
  basic_matrix<S> x;              ///< (N, D) the input
  basic_matrix<S> q, k;           ///< (N, D) queries and keys after RoPE
  basic_matrix<S> v;              ///< (N, D) values
  std::vector<basic_matrix<S>> p; ///< per (sequence, head), sequence-major: (T, T)
                                  ///< probabilities, exactly 0 above the diagonal
  basic_matrix<S> o;              ///< (N, D) the heads' outputs side by side, before wo
};

/// x (N, D), N a multiple of seq_len -> y (N, D) = concat_h softmax(q_h k_h^T / sqrt(d) +
/// causal mask) v_h, times wo. Position j > i gets probability 0 for query i: a later token
/// never reaches an earlier output. tape: filled when given.
template <class S>
void attention_forward(const basic_attention_params<S>& w, const layer_config& lc,
                       const basic_matrix<S>& x, Eigen::Index seq_len, basic_matrix<S>& y,
                       attention_tape<S>* tape = nullptr);

/// The backward of attention_forward: dy (N, D) -> dx (N, D) (overwritten); adds the
/// gradients of wq, wk, wv, wo to g.
template <class S>
void attention_backward(const basic_attention_params<S>& w, const layer_config& lc,
                        const attention_tape<S>& tape, Eigen::Index seq_len,
                        const basic_matrix<S>& dy, basic_attention_params<S>& g,
                        basic_matrix<S>& dx);

/// Where a decoder keeps one attention layer's keys and values: shards of `shard_capacity`
/// positions each (a new one opens when the last is full), block summaries of `block_size`.
struct kv_layout {
  std::int64_t shard_capacity = 4096;
  int block_size = 64;
};

/// The queries, keys and values of n rows at positions [first, first + n), one (n, d)
/// matrix per head: q and k rotated by their positions (as keys enter a KV shard).
struct attention_projection {
  std::vector<matrix> q, k, v;
};

/// x (n, D) is the layer's (normed) input at positions [first, first + n).
attention_projection attention_project(const attention_params& w, const layer_config& lc,
                                       const matrix& x, std::int64_t first);

/// The heads' outputs (n, d) each -> side by side (n, D) times wo: the layer's output.
matrix attention_output(const attention_params& w, std::span<const matrix> heads);

/// One decode step of a sequence: x (n, D) is the (normed) input at positions [position,
/// position + n), where `position` must be the next position of `shards` (0 when empty). Its
/// rotated keys and values are appended (opening shards of `layout.shard_capacity` as the
/// last one fills); every head's queries attend over every shard, causally, and the partials
/// are merged exactly (context_store::merge) -> y (n, D). Equals rows [position, position +
/// n) of attention_forward on the whole sequence up to rounding. The cluster runs the same
/// steps with the shards in shard actors (actors/composer_actor.cpp).
matrix attention_decode(const attention_params& w, const layer_config& lc, const matrix& x,
                        std::int64_t position, std::vector<context::kv_shard>& shards,
                        const kv_layout& layout = {});

} // namespace eoe::experts
