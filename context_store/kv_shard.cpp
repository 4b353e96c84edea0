#include "context_store/kv_shard.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace eoe::context {

namespace {

/// Keys per tile of the online softmax: bounds the score buffer at rows x tile floats.
constexpr std::int64_t tile = 2048;

/// Asks the kernel to back a large buffer with transparent huge pages where it allows them
/// (THP "madvise" mode): sparse reads jump between blocks all over the shard, and 2 MiB pages
/// spare them a TLB miss per block. Advice only: nothing changes if the kernel declines.
void advise_huge_pages(float* data, std::int64_t count) {
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto first = (reinterpret_cast<std::uintptr_t>(data) + huge - 1) & ~(huge - 1);
  const auto last = (reinterpret_cast<std::uintptr_t>(data + count)) & ~(huge - 1);
  if (last > first)
    (void) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

} // namespace

kv_shard::kv_shard(shard_shape shape, std::int64_t begin, std::int64_t capacity)
  : shape_(shape), begin_(begin), capacity_(capacity) {
  if (shape.heads < 1 || shape.head_dim < 1 || shape.block_size < 1 || capacity < 0 || begin < 0)
    throw std::invalid_argument("kv_shard: heads, head_dim and block_size must be >= 1, "
                                "begin and capacity >= 0");
  const auto blocks = (capacity + shape.block_size - 1) / shape.block_size;
  for (int h = 0; h < shape.heads; ++h) {
    k_.emplace_back(capacity, shape.head_dim);
    v_.emplace_back(capacity, shape.head_dim);
    advise_huge_pages(k_.back().data(), k_.back().size());
    advise_huge_pages(v_.back().data(), v_.back().size());
    mean_.push_back(matrix::Zero(blocks, shape.head_dim)); // sums until divided on use
    min_.emplace_back(blocks, shape.head_dim);
    max_.emplace_back(blocks, shape.head_dim);
    bounds_.emplace_back(blocks, shape.head_dim);
  }
}

void kv_shard::append(std::span<const matrix> k, std::span<const matrix> v) {
  if (static_cast<int>(k.size()) != shape_.heads || static_cast<int>(v.size()) != shape_.heads)
    throw std::invalid_argument("kv_shard::append: one key and one value matrix per head ("
                                + std::to_string(shape_.heads) + ")");
  const auto m = k[0].rows();
  for (int h = 0; h < shape_.heads; ++h)
    if (k[h].rows() != m || v[h].rows() != m || k[h].cols() != shape_.head_dim
        || v[h].cols() != shape_.head_dim)
      throw std::invalid_argument("kv_shard::append: head " + std::to_string(h) + " needs ("
                                  + std::to_string(m) + ", " + std::to_string(shape_.head_dim)
                                  + ") keys and values");
  if (size_ + m > capacity_)
    throw std::length_error("kv_shard::append: " + std::to_string(m) + " positions do not fit ("
                            + std::to_string(size_) + " of " + std::to_string(capacity_)
                            + " used)");
  const auto b = shape_.block_size;
  for (int h = 0; h < shape_.heads; ++h) {
    k_[h].middleRows(size_, m) = k[h];
    v_[h].middleRows(size_, m) = v[h];
    for (Eigen::Index r = 0; r < m; ++r) {
      const auto blk = (size_ + r) / b;
      const auto key = k[h].row(r);
      mean_[h].row(blk) += key;
      if ((size_ + r) % b == 0) {
        min_[h].row(blk) = key;
        max_[h].row(blk) = key;
      } else {
        min_[h].row(blk) = min_[h].row(blk).cwiseMin(key);
        max_[h].row(blk) = max_[h].row(blk).cwiseMax(key);
      }
    }
    for (auto blk = size_ / b; blk < (size_ + m + b - 1) / b; ++blk)
      bounds_[h].set(blk, min_[h].row(blk), max_[h].row(blk));
  }
  size_ += m;
}

void kv_shard::replace(std::int64_t position, std::span<const matrix> k,
                       std::span<const matrix> v) {
  const auto local = position - begin_;
  if (local < 0 || local >= size_)
    throw std::out_of_range("kv_shard::replace: position " + std::to_string(position)
                            + " is not held here [" + std::to_string(begin_) + ", "
                            + std::to_string(end()) + ")");
  if (static_cast<int>(k.size()) != shape_.heads || static_cast<int>(v.size()) != shape_.heads)
    throw std::invalid_argument("kv_shard::replace: one key and one value per head");
  const auto b = local / shape_.block_size;
  const auto first = b * shape_.block_size;
  const auto n = std::min<std::int64_t>(shape_.block_size, size_ - first);
  for (int h = 0; h < shape_.heads; ++h) {
    if (k[h].rows() != 1 || v[h].rows() != 1 || k[h].cols() != shape_.head_dim
        || v[h].cols() != shape_.head_dim)
      throw std::invalid_argument("kv_shard::replace: head " + std::to_string(h) + " needs (1, "
                                  + std::to_string(shape_.head_dim) + ") key and value");
    k_[h].row(local) = k[h];
    v_[h].row(local) = v[h];
    const auto rows = k_[h].middleRows(first, n);
    mean_[h].row(b) = rows.colwise().sum();
    min_[h].row(b) = rows.colwise().minCoeff();
    max_[h].row(b) = rows.colwise().maxCoeff();
    bounds_[h].set(b, min_[h].row(b), max_[h].row(b));
  }
}

matrix::ConstRowsBlockXpr kv_shard::keys(int head) const {
  return k_.at(static_cast<size_t>(head)).topRows(size_);
}

matrix::ConstRowsBlockXpr kv_shard::values(int head) const {
  return v_.at(static_cast<size_t>(head)).topRows(size_);
}

std::int64_t kv_shard::bytes() const noexcept {
  return 2 * size_ * shape_.heads * shape_.head_dim * static_cast<std::int64_t>(sizeof(float));
}

void kv_shard::check_query(int head, const matrix& q,
                           std::span<const std::int64_t> positions) const {
  if (head < 0 || head >= shape_.heads)
    throw std::invalid_argument("kv_shard: no head " + std::to_string(head));
  if (q.cols() != shape_.head_dim)
    throw std::invalid_argument("kv_shard: queries of width " + std::to_string(q.cols())
                                + ", the heads have " + std::to_string(shape_.head_dim));
  if (static_cast<Eigen::Index>(positions.size()) != q.rows())
    throw std::invalid_argument("kv_shard: one position per query row");
}

void kv_shard::attend_range(int head, const matrix& q, std::span<const std::int64_t> positions,
                            bool causal, std::int64_t from, std::int64_t to,
                            partial& acc) const {
  const auto rows = q.rows();
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
  std::int64_t last_visible = to; // with causal masking, nothing past the latest query
  if (causal) {
    const auto latest = *std::max_element(positions.begin(), positions.end());
    last_visible = std::min<std::int64_t>(to, latest - begin_ + 1);
  }
  const auto& keys = k_[head];
  const auto& vals = v_[head];
  // Score buffers reused across calls: sparse reads call this once per block.
  thread_local matrix s_buf, p_buf;
  if (s_buf.rows() != rows || s_buf.cols() < tile) {
    s_buf.resize(rows, tile);
    p_buf.resize(rows, tile);
  }
  if (rows == 1) {
    const key_range all{from, last_visible};
    decode(head, q, positions[0], causal, {&all, 1}, acc);
    return;
  }
  for (std::int64_t t0 = from; t0 < last_visible; t0 += tile) {
    const auto n = std::min(tile, last_visible - t0);
    auto s = s_buf.leftCols(n);
    auto p = p_buf.leftCols(n);
    s.noalias() = (q * keys.middleRows(t0, n).transpose()) * scale;
    if (causal)
      for (Eigen::Index r = 0; r < rows; ++r) {
        const auto visible = positions[r] - (begin_ + t0) + 1; // keys [0, visible) of the tile
        for (auto j = std::max<std::int64_t>(0, visible); j < n; ++j)
          s(r, j) = no_key;
      }
    for (Eigen::Index r = 0; r < rows; ++r) {
      const float tile_max = s.row(r).maxCoeff();
      if (tile_max == no_key) {
        p.row(r).setZero();
        continue;
      }
      const float m_new = std::max(acc.max[r], tile_max);
      const float rescale = acc.max[r] == no_key ? 0.0f : std::exp(acc.max[r] - m_new);
      p.row(r) = (s.row(r).array() - m_new).exp();
      acc.sum[r] = acc.sum[r] * rescale + p.row(r).sum();
      acc.out.row(r) *= rescale;
      acc.max[r] = m_new;
    }
    acc.out.noalias() += p * vals.middleRows(t0, n);
  }
}

void kv_shard::decode(int head, const matrix& q, std::int64_t position, bool causal,
                      std::span<const key_range> ranges, partial& acc) const {
  // A decode step: one query row, read key by key and value by value (no GEMM set-up per
  // block), several ranges side by side.
  const int d = shape_.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  thread_local std::vector<key_range> visible;
  visible.clear();
  const auto last = causal ? position - begin_ + 1 : size_;
  for (auto r : ranges)
    if (std::min(r.end, last) > r.begin)
      visible.push_back({r.begin, std::min(r.end, last)});
  decode_state st{acc.out.data(), acc.max[0], acc.sum[0]};
  decode_step(k_[head].data(), v_[head].data(), d, q.data(), scale, visible, st);
  acc.max[0] = st.max;
  acc.sum[0] = st.sum;
}

namespace {

void normalise(partial& acc) {
  for (size_t r = 0; r < acc.rows(); ++r)
    if (acc.sum[r] > 0.0f)
      acc.out.row(static_cast<Eigen::Index>(r)) /= acc.sum[r];
}

} // namespace

partial kv_shard::attend(int head, const matrix& q, std::span<const std::int64_t> positions,
                         bool causal) const {
  check_query(head, q, positions);
  auto acc = empty_partial(static_cast<size_t>(q.rows()), shape_.head_dim);
  if (q.rows() > 0)
    attend_range(head, q, positions, causal, 0, size_, acc);
  normalise(acc);
  return acc;
}

partial kv_shard::attend_blocks(int head, const matrix& q, std::span<const std::int64_t> positions,
                                bool causal, std::span<const int> blocks) const {
  check_query(head, q, positions);
  std::vector<int> sorted(blocks.begin(), blocks.end());
  std::sort(sorted.begin(), sorted.end());
  auto acc = empty_partial(static_cast<size_t>(q.rows()), shape_.head_dim);
  for (size_t i = 0; i < sorted.size(); ++i) {
    const int b = sorted[i];
    if (b < 0 || b >= this->blocks() || (i > 0 && sorted[i - 1] == b))
      throw std::invalid_argument("kv_shard::attend_blocks: block " + std::to_string(b)
                                  + " is not a block of this shard, or listed twice");
  }
  // Runs of adjacent blocks are read as one range; a decode step reads them all side by side.
  const auto b = static_cast<std::int64_t>(shape_.block_size);
  if (q.rows() == 1) {
    std::vector<key_range> ranges;
    for (int blk : sorted)
      ranges.push_back({blk * b, std::min(size_, (blk + 1) * b)});
    decode(head, q, positions[0], causal, ranges, acc);
    normalise(acc);
    return acc;
  }
  for (size_t i = 0; i < sorted.size() && q.rows() > 0;) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[j - 1] + 1)
      ++j;
    attend_range(head, q, positions, causal, sorted[i] * b, std::min(size_, (sorted[j - 1] + 1) * b),
                 acc);
    i = j;
  }
  normalise(acc);
  return acc;
}

matrix kv_shard::score_blocks(int head, const matrix& q, std::span<const std::int64_t> positions,
                              bool causal, block_score kind) const {
  check_query(head, q, positions);
  const int nb = blocks();
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
  matrix out(q.rows(), nb);
  if (nb == 0)
    return out;
  if (kind == block_score::moba) {
    matrix mean = mean_[head].topRows(nb);
    for (int b = 0; b < nb; ++b) {
      const auto count = std::min<std::int64_t>(shape_.block_size,
                                                size_ - static_cast<std::int64_t>(b) * shape_.block_size);
      mean.row(b) /= static_cast<float>(count);
    }
    out.noalias() = (q * mean.transpose()) * scale;
  } else {
    // sum_i max(q_i min_i, q_i max_i) = q+ . max + q- . min, from the 8-bit bounds.
    for (Eigen::Index r = 0; r < q.rows(); ++r)
      bounds_[head].score(q.row(r).data(), scale, nb, out.row(r).data());
  }
  if (causal)
    for (Eigen::Index r = 0; r < q.rows(); ++r)
      for (int b = 0; b < nb; ++b)
        if (begin_ + static_cast<std::int64_t>(b) * shape_.block_size > positions[r])
          out(r, b) = no_key;
  return out;
}

} // namespace eoe::context
