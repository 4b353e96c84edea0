#pragma once
// The per-dimension key bounds of every block, in 8 bits: what the Quest score reads. Each
// block b keeps a step s_b = max_i |key bound_i| / 127 and, per dimension, its maximum rounded
// up and its minimum rounded down to multiples of s_b. So q+ . max + q- . min computed from
// them is still an upper bound of every q . k in the block (slightly looser: by at most
// s_b sum_i |q_i|), while a score reads d + 4 bytes of bounds per block, not 2 d floats: at
// 1/8 sparsity the float bounds alone were an eighth of the bytes a sparse decode read.

#include "kernels/tensor.hpp"

#include <cstdint>
#include <vector>

namespace eoe::context {

class block_bounds {
public:
  /// Bounds for `blocks` blocks of width d, all zero.
  block_bounds(std::int64_t blocks, int d);

  /// Sets block b from its exact per-dimension minimum and maximum (1, d).
  void set(std::int64_t b, const Eigen::Ref<const Eigen::RowVectorXf>& min,
           const Eigen::Ref<const Eigen::RowVectorXf>& max);

  /// out[b] = scale * (q+ . max_b + q- . min_b) for blocks [0, n); q (d), out (n).
  void score(const float* q, float scale, std::int64_t n, float* out) const;

  /// The bounds block b holds, as floats: (max, min), each (1, d).
  std::pair<Eigen::RowVectorXf, Eigen::RowVectorXf> bounds(std::int64_t b) const;

private:
  int d_;
  std::vector<std::int8_t> max_, min_; ///< (blocks, d) in steps
  std::vector<float> step_;            ///< (blocks)
};

} // namespace eoe::context
