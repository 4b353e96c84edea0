#include "context_store/block_bounds.hpp"

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>

namespace eoe::context {

block_bounds::block_bounds(std::int64_t blocks, int d)
  : d_(d), max_(static_cast<size_t>(blocks * d)), min_(static_cast<size_t>(blocks * d)),
    step_(static_cast<size_t>(blocks)) {
  // nop
}

void block_bounds::set(std::int64_t b, const Eigen::Ref<const Eigen::RowVectorXf>& min,
                       const Eigen::Ref<const Eigen::RowVectorXf>& max) {
  const float largest = std::max(max.cwiseAbs().maxCoeff(), min.cwiseAbs().maxCoeff());
  // A step a hair above largest / 127, so that no bound needs more than 127 steps even after
  // the division rounds.
  const float step = largest > 0 ? largest / 127.0f * 1.000001f : 1.0f;
  auto* hi = max_.data() + b * d_;
  auto* lo = min_.data() + b * d_;
  for (int i = 0; i < d_; ++i) {
    // Round outwards, then step once more where the division's rounding left the bound short.
    float up = std::ceil(max[i] / step), down = std::floor(min[i] / step);
    if (up * step < max[i])
      up += 1;
    if (down * step > min[i])
      down -= 1;
    hi[i] = static_cast<std::int8_t>(std::clamp(up, -127.0f, 127.0f));
    lo[i] = static_cast<std::int8_t>(std::clamp(down, -127.0f, 127.0f));
  }
  step_[static_cast<size_t>(b)] = step;
}

void block_bounds::score(const float* q, float scale, std::int64_t n, float* out) const {
  thread_local std::vector<float> pos, neg;
  pos.resize(static_cast<size_t>(d_));
  neg.resize(static_cast<size_t>(d_));
  for (int i = 0; i < d_; ++i) {
    pos[i] = std::max(q[i], 0.0f);
    neg[i] = std::min(q[i], 0.0f);
  }
  int whole = 0; // dimensions done eight at a time
#ifdef __AVX2__
  whole = d_ / 8 * 8;
#endif
  for (std::int64_t b = 0; b < n; ++b) {
    const auto* hi = max_.data() + b * d_;
    const auto* lo = min_.data() + b * d_;
    float sum = 0;
#ifdef __AVX2__
    // Eight bounds widened from 8 bits to floats per instruction pair; two running sums.
    __m256 acc_hi = _mm256_setzero_ps(), acc_lo = _mm256_setzero_ps();
    for (int i = 0; i < whole; i += 8) {
      const auto h = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(hi + i))));
      const auto l = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(lo + i))));
      acc_hi = _mm256_fmadd_ps(_mm256_loadu_ps(pos.data() + i), h, acc_hi);
      acc_lo = _mm256_fmadd_ps(_mm256_loadu_ps(neg.data() + i), l, acc_lo);
    }
    const __m256 acc = _mm256_add_ps(acc_hi, acc_lo);
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    sum = _mm_cvtss_f32(half);
#endif
    for (int i = whole; i < d_; ++i)
      sum += pos[i] * static_cast<float>(hi[i]) + neg[i] * static_cast<float>(lo[i]);
    out[b] = sum * step_[static_cast<size_t>(b)] * scale;
  }
}

std::pair<Eigen::RowVectorXf, Eigen::RowVectorXf> block_bounds::bounds(std::int64_t b) const {
  Eigen::RowVectorXf hi(d_), lo(d_);
  const float step = step_[static_cast<size_t>(b)];
  for (int i = 0; i < d_; ++i) {
    hi[i] = static_cast<float>(max_[static_cast<size_t>(b * d_ + i)]) * step;
    lo[i] = static_cast<float>(min_[static_cast<size_t>(b * d_ + i)]) * step;
  }
  return {hi, lo};
}

} // namespace eoe::context
