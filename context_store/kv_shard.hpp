#pragma once
// A KV shard: the keys and values of every head for a contiguous range of positions
// [begin, begin + size), with a summary of every block of B positions (mean key, and the
// per-dimension minimum and maximum of the keys) that sparse selection scores without
// reading the keys. Float32 on the CPU. Math only: usable and testable without actors.

#include "context_store/block_bounds.hpp"
#include "context_store/decode.hpp"
#include "context_store/partial.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::context {

struct shard_shape {
  int heads = 1;
  int head_dim = 64;
  int block_size = 64; ///< positions per block summary

  bool operator==(const shard_shape&) const = default;
};

/// How a block is scored against a query.
enum class block_score : std::uint8_t {
  quest, ///< upper bound of q . k over the block: sum_i max(q_i min_i, q_i max_i), from
         ///< the bounds rounded outwards to 8 bits (block_bounds)
  moba,  ///< q . mean key of the block
};

class kv_shard {
public:
  /// An empty shard for positions starting at `begin`, holding at most `capacity` of them.
  kv_shard(shard_shape shape, std::int64_t begin, std::int64_t capacity);

  const shard_shape& shape() const noexcept {
    return shape_;
  }
  std::int64_t begin() const noexcept {
    return begin_;
  }
  std::int64_t size() const noexcept {
    return size_;
  }
  std::int64_t capacity() const noexcept {
    return capacity_;
  }
  std::int64_t end() const noexcept {
    return begin_ + size_;
  }
  /// Blocks with at least one position.
  int blocks() const noexcept {
    return static_cast<int>((size_ + shape_.block_size - 1) / shape_.block_size);
  }

  /// Appends m positions: k[h], v[h] are (m, head_dim) for every head. Throws
  /// std::invalid_argument on a shape mismatch and std::length_error past the capacity.
  void append(std::span<const matrix> k, std::span<const matrix> v);

  /// Replaces the keys and values of one held position (k[h], v[h] are (1, head_dim)) and
  /// recomputes its block's summary.
  void replace(std::int64_t position, std::span<const matrix> k, std::span<const matrix> v);

  /// Softmax attention of the queries q (rows, head_dim) of `head`, at global `positions`, over
  /// every key of the shard (causal: only keys at positions <= the query's).
  partial attend(int head, const matrix& q, std::span<const std::int64_t> positions,
                 bool causal) const;

  /// The same over the listed blocks (local indices, any order, no repeats) only.
  partial attend_blocks(int head, const matrix& q, std::span<const std::int64_t> positions,
                        bool causal, std::span<const int> blocks) const;

  /// Scores of every block for every query row: (rows, blocks); a block with no visible key
  /// (causal, wholly after the query) scores -inf.
  matrix score_blocks(int head, const matrix& q, std::span<const std::int64_t> positions,
                      bool causal, block_score kind) const;

  /// The keys and values of a head, (size, head_dim).
  matrix::ConstRowsBlockXpr keys(int head) const;
  matrix::ConstRowsBlockXpr values(int head) const;

  /// Bytes of keys and values held.
  std::int64_t bytes() const noexcept;

private:
  void check_query(int head, const matrix& q, std::span<const std::int64_t> positions) const;
  /// A single query row over key rows in `ranges` (causal: clipped at its position),
  /// accumulated into running state.
  void decode(int head, const matrix& q, std::int64_t position, bool causal,
              std::span<const key_range> ranges, partial& acc) const;
  /// Attention over key rows [from, to) of the shard, accumulated into running state.
  void attend_range(int head, const matrix& q, std::span<const std::int64_t> positions,
                    bool causal, std::int64_t from, std::int64_t to, partial& acc) const;

  shard_shape shape_;
  std::int64_t begin_;
  std::int64_t capacity_;
  std::int64_t size_ = 0;
  std::vector<matrix> k_, v_;                 ///< per head (capacity, d)
  std::vector<matrix> mean_, min_, max_;      ///< per head (capacity blocks, d)
  std::vector<block_bounds> bounds_;          ///< per head: min_ and max_ in 8 bits
};

} // namespace eoe::context
