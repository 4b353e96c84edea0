#pragma once
// A second, deliberately naive implementation of the model forward for the tests: one token at
// a time, scalar loops in double, its own top-k by sorting, its own softmax and router. It
// shares nothing with experts/model/forward.cpp but the weights and the hash function (the spec of
// hash routing).

#include "experts/nn/hash_routing.hpp"
#include "experts/model/model.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace eoe::test {

using vec = std::vector<double>;

struct reference_result {
  std::vector<vec> output;                          ///< per token
  std::vector<std::vector<std::vector<int>>> active; ///< [layer][token] -> experts, ascending
  std::vector<std::vector<std::vector<double>>> gates; ///< [layer][token] -> gates
};

inline vec affine(const vec& x, const matrix& w, const matrix& b) {
  vec y(static_cast<size_t>(w.cols()), 0.0);
  for (Eigen::Index j = 0; j < w.cols(); ++j) {
    double s = b.size() ? b(0, j) : 0.0;
    for (Eigen::Index i = 0; i < w.rows(); ++i)
      s += x[i] * double(w(i, j));
    y[j] = s;
  }
  return y;
}

inline double act(kernels::activation a, double v) {
  return a == kernels::activation::silu ? v / (1.0 + std::exp(-v))
                                        : 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
}

/// Indices of the k largest values, larger first, ties to the lower index; returned ascending.
inline std::vector<int> top_indices(const vec& s, int k) {
  std::vector<int> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return s[a] > s[b]; });
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

inline vec softmax_of(const vec& s) {
  vec g(s.size());
  double m = s.empty() ? 0 : *std::max_element(s.begin(), s.end()), z = 0;
  for (size_t i = 0; i < s.size(); ++i)
    z += g[i] = std::exp(s[i] - m);
  for (auto& v : g)
    v /= z;
  return g;
}

inline reference_result reference_forward(const experts::model& m, const matrix& x,
                                          std::vector<std::uint64_t> ids = {}) {
  using experts::layer_kind;
  const auto& c = m.config;
  const size_t T = static_cast<size_t>(x.rows()), L = c.unrolled_layers();
  reference_result r;
  r.active.assign(L, std::vector<std::vector<int>>(T));
  r.gates.assign(L, std::vector<std::vector<double>>(T));
  for (size_t t = 0; t < T; ++t) {
    vec in(x.row(t).begin(), x.row(t).end());
    vec h = c.input_dim > 0 ? affine(in, m.embed_w, m.embed_b) : in;
    std::vector<std::pair<int, vec>> pending; // (expert, g * y) of the previous layer
    // The layers as run: a recurrent layer appears once per step, with the same weights.
    std::vector<size_t> schedule;
    for (size_t cl = 0; cl < c.layers.size(); ++cl)
      schedule.insert(schedule.end(), static_cast<size_t>(c.layers[cl].steps), cl);
    for (size_t l = 0; l < L; ++l) {
      const auto& lc = c.layers[schedule[l]];
      const auto& lp = m.layers[schedule[l]];
      vec hn = h;
      for (auto& [i, gy] : pending)
        for (size_t d = 0; d < hn.size(); ++d)
          hn[d] += gy[d];
      auto ffn_rest = [&](const experts::ffn_expert& w, const vec& first_in) {
        vec z = affine(first_in, w.w1, w.b1);
        for (auto& v : z)
          v = act(lc.act, v);
        return affine(z, w.w2, w.b2);
      };
      std::vector<int> chosen;
      vec gates;
      std::vector<vec> first_in(static_cast<size_t>(lc.experts));
      switch (lc.kind) {
        case layer_kind::eoe: {
          vec scores(static_cast<size_t>(lc.experts));
          for (int j = 0; j < lc.experts; ++j) {
            vec u_in = hn;
            if (lc.affinity) {
              u_in = h;
              for (auto& [i, gy] : pending)
                for (size_t d = 0; d < u_in.size(); ++d)
                  u_in[d] += double(lp.affinity(i, j)) * gy[d];
            }
            // Factored: u = x A feeds the rest and its first score_columns score. Not factored:
            // the expert reads x, and its first score_columns pre-activations x W1 score.
            const bool factored = lc.rank > 0;
            first_in[j] = factored ? affine(u_in, lp.experts[j].a, matrix{}) : u_in;
            const vec scored = factored ? first_in[j] : affine(u_in, lp.experts[j].w1, matrix{});
            double n2 = 0;
            for (int i = 0; i < lc.score_columns; ++i)
              n2 += scored[static_cast<size_t>(i)] * scored[static_cast<size_t>(i)];
            scores[j] = std::sqrt(n2);
          }
          if (lc.mode == experts::activation_mode::topk) {
            vec ranked = scores; // ranked with the selection bias, gated without it
            for (int j = 0; j < lc.experts; ++j)
              ranked[j] += double(lp.select_bias(0, j));
            chosen = top_indices(ranked, lc.k);
          } else {
            for (int j = 0; j < lc.experts; ++j)
              if (scores[j] > double(lp.tau(0, j)))
                chosen.push_back(j);
          }
          vec active_scores; // gate logits: score + gate bias
          for (int j : chosen)
            active_scores.push_back(scores[j] + double(lp.gate_bias(0, j)));
          gates = softmax_of(active_scores);
          break;
        }
        case layer_kind::router: {
          vec probs = softmax_of(affine(hn, lp.router, matrix{}));
          chosen = top_indices(probs, lc.k);
          double sum = 0;
          for (int j : chosen) {
            gates.push_back(probs[j]);
            sum += probs[j];
          }
          if (lc.k > 1)
            for (auto& g : gates)
              g /= sum;
          for (int j : chosen)
            first_in[j] = hn;
          break;
        }
        case layer_kind::hash: {
          const std::uint64_t id = ids.empty() ? t : ids[t];
          for (int j : experts::hash_experts(id, lc.experts, lc.k, c.seed + l)) { // seed: unrolled
            chosen.push_back(j);
            gates.push_back(1.0 / lc.k);
            first_in[j] = hn;
          }
          break;
        }
        case layer_kind::dense:
          chosen = {0};
          gates = {1.0};
          first_in[0] = hn;
          break;
        case layer_kind::attention:
          throw std::logic_error("reference forward: classifiers only");
      }
      pending.clear();
      for (size_t a = 0; a < chosen.size(); ++a) {
        vec y = ffn_rest(lp.experts[chosen[a]], first_in[chosen[a]]);
        for (auto& v : y)
          v *= gates[a];
        pending.emplace_back(chosen[a], std::move(y));
      }
      r.active[l][t] = chosen;
      r.gates[l][t] = gates;
      h = std::move(hn);
    }
    for (auto& [i, gy] : pending)
      for (size_t d = 0; d < h.size(); ++d)
        h[d] += gy[d];
    r.output.push_back(c.classes > 0 ? affine(h, m.head_w, m.head_b) : h);
  }
  return r;
}

} // namespace eoe::test
