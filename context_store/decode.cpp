#include "context_store/decode.hpp"

#include "context_store/partial.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace eoe::context {

namespace {

/// Rows per piece: bounds the score buffer at decode_streams x piece_rows floats.
constexpr std::int64_t piece_rows = 256;

/// The ranges cut into pieces of at most piece_rows, ordered so that each run of
/// decode_streams pieces lies in different lanes (ranges, or parts of one range when there are
/// fewer ranges than streams) and is read side by side.
std::vector<key_range> pieces_of(std::span<const key_range> ranges) {
  std::vector<key_range> lanes;
  for (auto r : ranges)
    if (r.end > r.begin)
      lanes.push_back(r);
  // Too few lanes (a full pass is one range): halve the longest until there are enough.
  while (!lanes.empty() && static_cast<int>(lanes.size()) < decode_streams) {
    auto longest = std::max_element(lanes.begin(), lanes.end(), [](auto a, auto b) {
      return a.end - a.begin < b.end - b.begin;
    });
    const auto n = longest->end - longest->begin;
    if (n <= piece_rows)
      break;
    const key_range second{longest->begin + n / 2, longest->end};
    longest->end = second.begin;
    lanes.push_back(second);
  }
  std::sort(lanes.begin(), lanes.end(), [](auto a, auto b) { return a.begin < b.begin; });
  std::vector<key_range> out;
  for (size_t g = 0; g < lanes.size(); g += decode_streams) {
    const auto group_end = std::min(lanes.size(), g + decode_streams);
    for (std::int64_t offset = 0;; offset += piece_rows) {
      bool any = false;
      for (auto l = g; l < group_end; ++l) {
        const auto first = lanes[l].begin + offset;
        if (first < lanes[l].end) {
          out.push_back({first, std::min(lanes[l].end, first + piece_rows)});
          any = true;
        }
      }
      if (!any)
        break;
    }
  }
  return out;
}

/// Folds up to decode_streams pieces into st. D fixed at compile time lets the dot products
/// and the updates unroll: the common head widths get their own instance.
template <int D>
void fold_pieces(const float* k, const float* v, int d, const float* q, float scale,
                 std::span<const key_range> group, float* scores, decode_state& st) {
  using vec = Eigen::Matrix<float, D, 1>;
  const Eigen::Map<const vec> qv{q, d};
  Eigen::Map<vec> o{st.out, d};
  const auto count = group.size();
  std::array<const float*, decode_streams> kp{}, vp{};
  std::array<float*, decode_streams> s{};
  std::array<std::int64_t, decode_streams> n{};
  std::int64_t common = piece_rows;
  for (size_t w = 0; w < count; ++w) {
    kp[w] = k + group[w].begin * d;
    vp[w] = v + group[w].begin * d;
    s[w] = scores + static_cast<std::int64_t>(w) * piece_rows;
    n[w] = group[w].end - group[w].begin;
    common = std::min(common, n[w]);
  }
  auto key = [&](size_t w, std::int64_t j) { return Eigen::Map<const vec>{kp[w] + j * d, d}; };
  auto value = [&](size_t w, std::int64_t j) { return Eigen::Map<const vec>{vp[w] + j * d, d}; };
  // Scores: key j of every piece in one turn, then what the longer pieces have left.
  if (count == decode_streams)
    for (std::int64_t j = 0; j < common; ++j)
      for (size_t w = 0; w < decode_streams; ++w)
        s[w][j] = key(w, j).dot(qv) * scale;
  else
    common = 0;
  float group_max = no_key;
  for (size_t w = 0; w < count; ++w) {
    for (auto j = common; j < n[w]; ++j)
      s[w][j] = key(w, j).dot(qv) * scale;
    group_max = std::max(group_max, Eigen::Map<const Eigen::ArrayXf>{s[w], n[w]}.maxCoeff());
  }
  const float m_new = std::max(st.max, group_max);
  const float rescale = st.max == no_key ? 0.0f : std::exp(st.max - m_new);
  o *= rescale;
  float group_sum = 0;
  for (size_t w = 0; w < count; ++w) {
    Eigen::Map<Eigen::ArrayXf> p{s[w], n[w]};
    p = (p - m_new).exp(); // vectorised
    group_sum += p.sum();
  }
  // Values, side by side in the same way.
  for (std::int64_t j = 0; j < common; ++j)
    for (size_t w = 0; w < decode_streams; ++w)
      o.noalias() += s[w][j] * value(w, j);
  for (size_t w = 0; w < count; ++w)
    for (auto j = common; j < n[w]; ++j)
      o.noalias() += s[w][j] * value(w, j);
  st.sum = st.sum * rescale + group_sum;
  st.max = m_new;
}

template <int D>
void decode_pieces(const float* k, const float* v, int d, const float* q, float scale,
                   std::span<const key_range> pieces, decode_state& st) {
  thread_local std::vector<float> scores;
  scores.resize(static_cast<size_t>(decode_streams * piece_rows));
  for (size_t i = 0; i < pieces.size(); i += decode_streams) {
    const auto count = std::min<size_t>(decode_streams, pieces.size() - i);
    fold_pieces<D>(k, v, d, q, scale, pieces.subspan(i, count), scores.data(), st);
  }
}

} // namespace

void decode_step(const float* k, const float* v, int d, const float* q, float scale,
                 std::span<const key_range> ranges, decode_state& st) {
  const auto pieces = pieces_of(ranges);
  switch (d) {
    case 32: // the shipped language models' heads (configs/lm: D 128, 4 heads)
      decode_pieces<32>(k, v, d, q, scale, pieces, st);
      break;
    case 64:
      decode_pieces<64>(k, v, d, q, scale, pieces, st);
      break;
    case 128:
      decode_pieces<128>(k, v, d, q, scale, pieces, st);
      break;
    default:
      decode_pieces<Eigen::Dynamic>(k, v, d, q, scale, pieces, st);
  }
}

} // namespace eoe::context
