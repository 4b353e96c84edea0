#pragma once
// Partial attention and its exact merge. A shard answers a block of queries with, per query
// row, the attention over its own visible keys: the normalised output O_p (q, d), the row max
// m_p of the scaled scores and the sum l_p of exp(score - m_p). The composer merges
//   m = max_p m_p,  O = sum_p exp(m_p - m) l_p O_p / sum_p exp(m_p - m) l_p
// which is softmax attention over the union of the keys, exactly (up to rounding).
// A row with no visible key in a shard has m_p = -inf, l_p = 0 and O_p = 0, and drops out.

#include "kernels/tensor.hpp"

#include <limits>
#include <span>
#include <vector>

namespace eoe::context {

/// One shard's answer for a block of q query rows of one head.
struct partial {
  matrix out;              ///< (q, d) normalised output over the shard's visible keys
  std::vector<float> max;  ///< (q) row max of the scaled scores; -inf: no visible key
  std::vector<float> sum;  ///< (q) sum of exp(score - max); 0: no visible key

  size_t rows() const noexcept {
    return max.size();
  }
};

inline constexpr float no_key = -std::numeric_limits<float>::infinity();

/// A partial with no visible key for any of q rows of width d.
partial empty_partial(size_t q, Eigen::Index d);

/// Partials of single rows (or blocks of rows) stacked into one, in order.
partial stack_rows(std::span<const partial> rows);

/// Merges partials of the same query rows (any order). Rows no partial sees keep an output of
/// 0, max -inf and sum 0. Throws std::invalid_argument when the shapes differ.
partial merge(std::span<const partial> parts);

} // namespace eoe::context
