#pragma once
// Sparse selection: which blocks of a long context a query reads. Every shard scores its own
// blocks (autonomy again); the composer either takes a global top-k in two rounds (each
// shard's own top-k candidates, then partials of the winners) or lets every shard read a
// budget of its own best blocks in one round.

#include "kernels/tensor.hpp"

#include <vector>

namespace eoe::context {

/// A scored block of a context.
struct scored_block {
  float score = 0;
  int shard = 0;
  int block = 0; ///< local to the shard
};

/// A shard's k best blocks for one query row, in block order (ties: the lower block); blocks
/// scoring -inf (nothing visible) are never chosen. scores: (rows, blocks) from score_blocks.
/// (Linear in the blocks: at 1/8 of a million-position context, k is in the thousands.)
std::vector<scored_block> shard_top(const matrix& scores, Eigen::Index row, int shard, int k);

/// The k best of the candidates of every shard, in (shard, block) order (ties: the lower
/// shard, then block). Equals the top k over all blocks when every shard sent its own top k.
std::vector<scored_block> global_top(std::vector<scored_block> candidates, int k);

/// A shard's budget for one query row: its ceil(fraction * visible blocks) best blocks.
std::vector<int> shard_budget(const matrix& scores, Eigen::Index row, double fraction);

} // namespace eoe::context
