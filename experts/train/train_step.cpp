#include "experts/train/train_step.hpp"

#include "experts/base/parallel.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>

namespace eoe::experts {

void fix_gemm_blocking() {
  // L1, L2, L3 as Eigen 3.4 reads them on the AMD EPYC VM of bench/RESULTS.md.
  Eigen::setCpuCacheSizes(49152, 1048576, 532676608);
}

double combine_gradients(model& grad, std::span<const model* const> slices,
                         std::span<const long> rows, long total) {
  std::vector<matrix*> dst;
  for_each_parameter(grad, [&](const std::string&, matrix& g) { dst.push_back(&g); });
  std::vector<std::vector<const matrix*>> src(slices.size());
  for (size_t s = 0; s < slices.size(); ++s)
    if (rows[s] > 0)
      for_each_parameter(*slices[s],
                         [&](const std::string&, const matrix& g) { src[s].push_back(&g); });
  std::vector<double> sq(dst.size(), 0.0);
  parallel_for(dst.size(), [&](size_t k) {
    bool first = true;
    for (size_t s = 0; s < slices.size(); ++s) {
      if (src[s].empty())
        continue;
      const float share = static_cast<float>(rows[s]) / static_cast<float>(total);
      if (first)
        dst[k]->noalias() = share * *src[s][k];
      else
        dst[k]->noalias() += share * *src[s][k];
      first = false;
    }
    sq[k] = static_cast<double>(dst[k]->squaredNorm());
  });
  double sum = 0;
  for (double v : sq)
    sum += v;
  return std::sqrt(sum);
}

void calibrate_thresholds(model& m, const std::vector<layer_trace<float>>& traces, double rate,
                          bool first) {
  const auto& c = m.config;
  for (size_t cl = 0; cl < c.layers.size(); ++cl) {
    const auto& lc = c.layers[cl];
    if (lc.kind != layer_kind::eoe || lc.mode != activation_mode::threshold)
      continue;
    for (int e = 0; e < lc.experts; ++e) {
      std::vector<float> s;
      for (auto& tr : traces)
        if (tr.config_layer == cl)
          s.insert(s.end(), tr.scores.col(e).begin(), tr.scores.col(e).end());
      if (s.empty())
        continue;
      const auto at = static_cast<size_t>(
        std::clamp((1.0 - rate) * static_cast<double>(s.size()), 0.0, double(s.size() - 1)));
      std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(at), s.end());
      float& tau = m.layers[cl].tau(0, e);
      tau = first ? s[at] : 0.9f * tau + 0.1f * s[at];
    }
  }
}

void balance_selection(model& m, const std::vector<layer_trace<float>>& traces, double rate) {
  const auto& c = m.config;
  for (size_t cl = 0; cl < c.layers.size(); ++cl) {
    const auto& lc = c.layers[cl];
    if (lc.kind != layer_kind::eoe || lc.mode != activation_mode::topk)
      continue;
    std::vector<double> load(static_cast<size_t>(lc.experts), 0.0);
    double total = 0;
    for (auto& tr : traces)
      if (tr.config_layer == cl)
        for (auto e : tr.active.experts) {
          load[e] += 1;
          total += 1;
        }
    if (total == 0)
      continue;
    for (int e = 0; e < lc.experts; ++e) {
      const double share = load[e] / total, fair = 1.0 / lc.experts;
      m.layers[cl].select_bias(0, e) +=
        static_cast<float>(share < fair ? rate : share > fair ? -rate : 0.0);
    }
  }
}

eigen_single_threaded::eigen_single_threaded() : threads_(Eigen::nbThreads()) {
  Eigen::setNbThreads(1);
}

eigen_single_threaded::~eigen_single_threaded() {
  Eigen::setNbThreads(threads_);
}

void eigen_single_threaded::suspend() const {
  Eigen::setNbThreads(threads_);
}

void eigen_single_threaded::resume() const {
  Eigen::setNbThreads(1);
}

double finish_step(model& m, const model& grad, double norm,
                   const std::vector<layer_trace<float>>& traces, const train_config& t,
                   adamw& opt, long step, long total) {
  calibrate_thresholds(m, traces, t.threshold_rate, step == 0);
  if (t.balance_bias_rate > 0)
    balance_selection(m, traces, t.balance_bias_rate);
  const double lr = learning_rate(t, step, total);
  opt.step(m, grad, lr, clip_scale(norm, t.grad_clip));
  return lr;
}

} // namespace eoe::experts
