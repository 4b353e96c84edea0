#include "context_store/selection.hpp"

#include "context_store/partial.hpp"

#include <algorithm>
#include <functional>
#include <cmath>

namespace eoe::context {

namespace {

/// Picks the k best of a sequence in one pass in its own order: every value above the k-th
/// best, and of those equal to it the first ones. Linear (nth_element on the bare scores),
/// where sorting k candidates in the thousands was most of a sparse decode's selection time.
class best_k_pass {
public:
  /// scores: every value of the sequence (reordered here); 1 <= k <= their number.
  best_k_pass(std::vector<float>& scores, size_t k) {
    std::nth_element(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(k - 1),
                     scores.end(), std::greater<>{});
    kth_ = scores[k - 1];
    ties_ = k - static_cast<size_t>(std::count_if(scores.begin(), scores.end(),
                                                  [this](float v) { return v > kth_; }));
  }

  /// Whether the next value of the sequence is one of the k.
  bool take(float v) {
    if (v > kth_)
      return true;
    if (v == kth_ && ties_ > 0) {
      --ties_;
      return true;
    }
    return false;
  }

private:
  float kth_ = 0;
  size_t ties_ = 0;
};

} // namespace

std::vector<scored_block> shard_top(const matrix& scores, Eigen::Index row, int shard, int k) {
  const auto* s = scores.row(row).data();
  const auto n = scores.cols();
  thread_local std::vector<float> visible;
  visible.clear();
  for (Eigen::Index b = 0; b < n; ++b)
    if (s[b] != no_key)
      visible.push_back(s[b]);
  const auto keep = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), visible.size());
  std::vector<scored_block> out;
  if (keep == 0)
    return out;
  best_k_pass best{visible, keep};
  out.reserve(keep);
  for (Eigen::Index b = 0; b < n; ++b)
    if (s[b] != no_key && best.take(s[b]))
      out.push_back({s[b], shard, static_cast<int>(b)});
  return out;
}

std::vector<scored_block> global_top(std::vector<scored_block> candidates, int k) {
  const auto keep = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), candidates.size());
  if (keep == 0)
    return {};
  // In (shard, block) order, the same pass as a shard's: shards send theirs in that order, so
  // the sort is only for candidates that come otherwise.
  auto by_place = [](const scored_block& a, const scored_block& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.block < b.block;
  };
  if (!std::is_sorted(candidates.begin(), candidates.end(), by_place))
    std::sort(candidates.begin(), candidates.end(), by_place);
  thread_local std::vector<float> scores;
  scores.clear();
  for (auto& c : candidates)
    scores.push_back(c.score);
  best_k_pass best{scores, keep};
  std::vector<scored_block> out;
  out.reserve(keep);
  for (auto& c : candidates)
    if (best.take(c.score))
      out.push_back(c);
  return out;
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
