#pragma once
// RMSNorm (Zhang & Sennrich 2019): y = x / rms(x) * g with rms(x) = sqrt(mean(x^2) + eps).
// A language model normalises the input of every residual branch (pre-norm) and the stream
// before the head: the branches then see inputs of one scale however the stream grows.

#include "kernels/tensor.hpp"

#include <cmath>
#include <vector>

namespace eoe::experts {

inline constexpr double rms_norm_eps = 1e-5;

/// x (N, D), gain (1, D) -> y (N, D); inv_rms (N) keeps 1 / rms(x) of every row for the
/// backward.
template <class S>
void rms_norm_forward(const basic_matrix<S>& x, const basic_matrix<S>& gain, basic_matrix<S>& y,
                      std::vector<S>& inv_rms) {
  const auto n = x.rows(), d = x.cols();
  y.resize(n, d);
  inv_rms.resize(static_cast<size_t>(n));
  for (Eigen::Index r = 0; r < n; ++r) {
    const S ms = x.row(r).squaredNorm() / static_cast<S>(d);
    const S inv = S{1} / std::sqrt(ms + static_cast<S>(rms_norm_eps));
    inv_rms[static_cast<size_t>(r)] = inv;
    y.row(r) = (x.row(r) * inv).cwiseProduct(gain.row(0));
  }
}

/// The backward of rms_norm_forward: dy (N, D) -> dx (N, D) (overwritten); adds to dgain
/// (1, D). With xh = x / rms: dx = (dxh - xh mean(dxh . xh)) / rms, dxh = dy . g.
template <class S>
void rms_norm_backward(const basic_matrix<S>& x, const basic_matrix<S>& gain,
                       const std::vector<S>& inv_rms, const basic_matrix<S>& dy,
                       basic_matrix<S>& dx, basic_matrix<S>& dgain) {
  const auto n = x.rows(), d = x.cols();
  dx.resize(n, d);
  for (Eigen::Index r = 0; r < n; ++r) {
    const S inv = inv_rms[static_cast<size_t>(r)];
    const auto xh = x.row(r) * inv;
    dgain.row(0) += dy.row(r).cwiseProduct(xh);
    const auto dxh = dy.row(r).cwiseProduct(gain.row(0));
    const S mean = dxh.dot(xh) / static_cast<S>(d);
    dx.row(r) = (dxh - xh * mean) * inv;
  }
}

} // namespace eoe::experts
