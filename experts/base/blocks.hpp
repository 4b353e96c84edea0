#pragma once
// The network as run. Every model is a stem, blocks and a head; the blocks are its config
// layers in order, a recurrent expert layer once per step. This is the one walk of the
// network: the reference forward, the language model's layer loop (lm_forward, decode_step),
// backprop and the mesh's epoch plan (whose composer runs the attention blocks and whose
// experts run the expert blocks, passing the stream between them in messages) all follow it.

#include "experts/base/model_config.hpp"

#include <cstdint>
#include <vector>

namespace eoe::experts {

/// One block as run.
struct block {
  std::uint32_t layer = 0; ///< the config layer
  /// Expert blocks: the block's index among the expert blocks as run (what records, hash
  /// seeds and dropout masks are keyed by). Attention blocks: the index of the expert block
  /// after them (the number of expert blocks run before).
  std::uint32_t unrolled = 0;
  bool attention = false;
};

/// The blocks of c in the order they run.
std::vector<block> blocks_of(const model_config& c);

} // namespace eoe::experts
