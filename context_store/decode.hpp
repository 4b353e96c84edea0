#pragma once
// One decode step: a single query row against rows of K and V, with the online softmax
// (running max and sum of exponentials). The rows to read are given as ranges, so that a
// full pass and a sparse pass over selected blocks are the same code.
//
// Reading memory is the whole cost of a decode step. One sequential stream leaves most of a
// core's memory parallelism unused, and a sparse pass, which starts a new stream at every
// selected block, pays the prefetcher's ramp-up each time. So the ranges are cut into pieces
// and `decode_streams` pieces are walked side by side, key j of every piece in the same loop
// turn: several streams in flight for both passes.

#include "kernels/tensor.hpp"

#include <cstdint>
#include <span>

namespace eoe::context {

/// Key rows [begin, end) to read.
struct key_range {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};

/// Running state of one query row: out (d) the unnormalised sum of p_j v_j, max the running
/// max of the scaled scores (-inf: no key yet), sum the running sum of exp(score - max).
struct decode_state {
  float* out = nullptr;
  float max = 0;
  float sum = 0;
};

/// Pieces walked side by side.
inline constexpr int decode_streams = 4;

/// Folds keys k (rows of width d, row-major) with values v into st for the query q (d), over
/// every row of `ranges` (any order, no overlaps), scores scaled by `scale`. The result does
/// not depend on how the ranges are cut, up to float rounding.
void decode_step(const float* k, const float* v, int d, const float* q, float scale,
                 std::span<const key_range> ranges, decode_state& st);

} // namespace eoe::context
