#pragma once
// The loss both models train on: softmax cross-entropy with label smoothing, mean over the
// predictions, and its gradient; and the linear head's backward. The classifier predicts a
// label per example, the language model the next token per position: the same rows of logits.

#include "kernels/tensor.hpp"

#include <cmath>
#include <cstdint>
#include <span>

namespace eoe::experts {

template <class S>
struct cross_entropy_result {
  S mean = 0;       ///< over the rows
  long correct = 0; ///< rows whose argmax is the target
};

/// logits (N, K), targets (N) in 0..K-1; the target distribution puts 1 - eps + eps / K on the
/// target and eps / K elsewhere. dlogits: d mean / d logits.
template <class S>
cross_entropy_result<S> smoothed_cross_entropy(const basic_matrix<S>& logits,
                                               std::span<const std::uint8_t> targets,
                                               double label_smoothing, basic_matrix<S>& dlogits) {
  const auto n = logits.rows(), classes = logits.cols();
  const S eps = static_cast<S>(label_smoothing);
  dlogits.resize(n, classes);
  cross_entropy_result<S> r;
  S ce = 0;
  for (Eigen::Index t = 0; t < n; ++t) {
    const S mx = logits.row(t).maxCoeff();
    S sum = 0;
    for (Eigen::Index k = 0; k < classes; ++k)
      sum += std::exp(logits(t, k) - mx);
    const S lse = mx + std::log(sum);
    Eigen::Index best = 0;
    logits.row(t).maxCoeff(&best);
    r.correct += best == targets[t];
    for (Eigen::Index k = 0; k < classes; ++k) {
      const S goal = (k == targets[t] ? S{1} - eps : S{0}) + eps / static_cast<S>(classes);
      ce -= goal * (logits(t, k) - lse);
      dlogits(t, k) = (std::exp(logits(t, k) - lse) - goal) / static_cast<S>(n);
    }
  }
  r.mean = ce / static_cast<S>(n);
  return r;
}

/// The head logits = x * w + b walked back: the gradients of w and b, and d loss / d x.
template <class S>
basic_matrix<S> linear_head_backward(const basic_matrix<S>& x, const basic_matrix<S>& w,
                                     const basic_matrix<S>& dlogits, basic_matrix<S>& gw,
                                     basic_matrix<S>& gb) {
  gw.noalias() = x.transpose() * dlogits;
  gb = dlogits.colwise().sum();
  return dlogits * w.transpose();
}

} // namespace eoe::experts
