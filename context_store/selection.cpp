#include "context_store/selection.hpp"

#include "context_store/partial.hpp"

#include <algorithm>
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
  std::vector<scored_block> all;
  for (Eigen::Index b = 0; b < scores.cols(); ++b)
    if (scores(row, b) != no_key)
      all.push_back({scores(row, b), shard, static_cast<int>(b)});
  const auto keep = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), all.size());
  // The k best first (nth_element), then ordered among themselves.
  std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(keep), all.end(), better);
  all.resize(keep);
  std::sort(all.begin(), all.end(), better);
  return all;
}

std::vector<scored_block> global_top(std::vector<scored_block> candidates, int k) {
  const auto keep = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), candidates.size());
  std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(keep),
                    candidates.end(), better);
  candidates.resize(keep);
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
