#pragma once
// Self-activation of EoE experts: every expert scores itself, and the decision to compute is
// the expert's own. Central selections here and the per-expert rule give the same answer, so
// a distributed expert that knows its layer peers' scores decides exactly as the reference.

#include "experts/nn/activation_set.hpp"
#include "kernels/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace eoe::experts {

/// Expert e's rank on one token: how many experts beat it, where a higher score beats a lower
/// one and on equal scores the lower index wins. scores: (E) of that token.
template <class S>
int topk_rank(std::span<const S> scores, int e) noexcept {
  const S s = scores[e];
  int rank = 0;
  for (int j = 0; j < static_cast<int>(scores.size()); ++j)
    rank += scores[j] > s || (scores[j] == s && j < e);
  return rank;
}

/// The per-expert topk rule: active iff fewer than k experts beat it.
template <class S>
bool active_in_topk(std::span<const S> scores, int e, int k) noexcept {
  return topk_rank(scores, e) < k;
}

/// The per-expert threshold rule: active iff the score exceeds tau (strictly).
template <class S>
bool active_over_threshold(S score, S tau) noexcept {
  return score > tau;
}

/// Gate weights of the active experts of one token: softmax over their scores.
/// scores: (n) of the active experts -> gates (n), summing to 1.
template <class S>
void softmax_gates(std::span<const S> scores, std::span<S> gates) noexcept {
  if (scores.empty())
    return;
  const S m = *std::max_element(scores.begin(), scores.end());
  S sum = 0;
  for (size_t i = 0; i < scores.size(); ++i)
    sum += gates[i] = std::exp(scores[i] - m);
  for (auto& g : gates)
    g /= sum;
}

namespace detail {

/// Builds the activation set from a per-(token, expert) membership rule on `decide` (T, E);
/// gates are the softmax of the members' entries of `gate` (T, E).
template <class S, class IsActive>
basic_activation_set<S> select(const basic_matrix<S>& decide, const basic_matrix<S>& gate,
                               IsActive&& is_active) {
  const auto n = decide.rows(), experts = decide.cols();
  basic_activation_set<S> out;
  out.offsets.reserve(static_cast<size_t>(n) + 1);
  std::vector<std::int32_t> es;
  std::vector<S> ss, gs;
  for (Eigen::Index t = 0; t < n; ++t) {
    std::span<const S> row{decide.data() + t * experts, static_cast<size_t>(experts)};
    es.clear();
    ss.clear();
    for (int e = 0; e < experts; ++e)
      if (is_active(row, e)) {
        es.push_back(e);
        ss.push_back(gate(t, e));
      }
    gs.resize(es.size());
    softmax_gates<S>(ss, gs);
    out.push_token(es, gs);
  }
  return out;
}

} // namespace detail

namespace detail {

/// scores (T, E) + bias (E) on every row; the scores themselves for an empty bias.
template <class S>
basic_matrix<S> plus_bias(const basic_matrix<S>& scores, std::span<const S> bias,
                          const char* what) {
  if (bias.empty())
    return scores;
  if (static_cast<Eigen::Index>(bias.size()) != scores.cols())
    throw std::invalid_argument(std::string{what} + ": one value per expert");
  basic_matrix<S> out = scores;
  for (Eigen::Index t = 0; t < out.rows(); ++t)
    for (Eigen::Index e = 0; e < out.cols(); ++e)
      out(t, e) += bias[static_cast<size_t>(e)];
  return out;
}

} // namespace detail

/// topk mode. scores: (T, E) -> per token the k best experts by topk_rank of score + selection
/// bias, gated by the softmax of their score + gate bias. Empty biases are zero.
template <class S>
basic_activation_set<S> select_topk(const basic_matrix<S>& scores, int k,
                                    std::span<const S> select_bias = {},
                                    std::span<const S> gate_bias = {}) {
  if (k < 1 || k > scores.cols())
    throw std::invalid_argument("select_topk: k must be in 1..experts");
  auto rule = [k](std::span<const S> row, int e) { return active_in_topk(row, e, k); };
  return detail::select(detail::plus_bias(scores, select_bias, "select_topk: selection bias"),
                        detail::plus_bias(scores, gate_bias, "select_topk: gate bias"), rule);
}

/// threshold mode. scores: (T, E), tau: (E) -> per token the experts whose score exceeds
/// their tau, gated by the softmax of score + gate bias; a token may have none (it then passes
/// through by the residual).
template <class S>
basic_activation_set<S> select_threshold(const basic_matrix<S>& scores, std::span<const S> tau,
                                         std::span<const S> gate_bias = {}) {
  if (static_cast<Eigen::Index>(tau.size()) != scores.cols())
    throw std::invalid_argument("select_threshold: one tau per expert");
  return detail::select(scores, detail::plus_bias(scores, gate_bias, "select_threshold: gate bias"),
                        [tau](std::span<const S> row, int e) {
                          return active_over_threshold(row[e], tau[e]);
                        });
}

} // namespace eoe::experts
