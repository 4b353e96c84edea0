#include "context_store/selection.hpp"

#include "context_store/partial.hpp"

#include <algorithm>
#include <functional>
#include <cmath>

namespace eoe::context {

namespace {

bool better(const scored_block& a, const scored_block& b) {
  if (a.score != b.score)
    return a.score > b.score;
  if (a.shard != b.shard)
    return a.shard < b.shard;
  return a.block < b.block;
}

} // namespace

std::vector<scored_block> shard_top(const matrix& scores, Eigen::Index row, int shard, int k) {
  const auto* s = scores.row(row).data();
  const auto n = scores.cols();
  // The k-th best score (nth_element over the bare floats), then the blocks above it and, in
  // block order, as many of those equal to it as fit: the k best with ties to the lower block.
  thread_local std::vector<float> visible;
  visible.clear();
  for (Eigen::Index b = 0; b < n; ++b)
    if (s[b] != no_key)
      visible.push_back(s[b]);
  const auto keep = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), visible.size());
  std::vector<scored_block> out;
  if (keep == 0)
    return out;
  std::nth_element(visible.begin(), visible.begin() + static_cast<std::ptrdiff_t>(keep - 1),
                   visible.end(), std::greater<>{});
  const float kth = visible[keep - 1];
  out.reserve(keep);
  for (Eigen::Index b = 0; b < n; ++b)
    if (s[b] > kth)
      out.push_back({s[b], shard, static_cast<int>(b)});
  for (Eigen::Index b = 0; b < n && out.size() < keep; ++b)
    if (s[b] == kth)
      out.push_back({s[b], shard, static_cast<int>(b)});
  std::sort(out.begin(), out.end(), better);
  return out;
}

std::vector<scored_block> global_top(std::vector<scored_block> candidates, int k) {
  const auto keep = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), candidates.size());
  // nth_element, then a sort of the kept ones: k is large (1/8 of all blocks), where
  // partial_sort's heap costs n log k.
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(keep),
                   candidates.end(), better);
  candidates.resize(keep);
  std::sort(candidates.begin(), candidates.end(), better);
  return candidates;
}

std::vector<int> shard_budget(const matrix& scores, Eigen::Index row, double fraction) {
  int visible = 0;
  for (Eigen::Index b = 0; b < scores.cols(); ++b)
    visible += scores(row, b) != no_key;
  const int k = visible == 0 ? 0 : std::max(1, static_cast<int>(std::ceil(fraction * visible)));
  std::vector<int> out;
  for (auto& s : shard_top(scores, row, 0, k))
    out.push_back(s.block);
  return out;
}

} // namespace eoe::context
