#pragma once
// What the float64 gradient checks share: a config from TOML text, thresholds set where they
// decide both ways, and the comparison of an analytic gradient with central differences.

#include "experts/train/backprop.hpp"
#include "experts/base/rng.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace eoe::test {

inline experts::model_config config_of(const std::string& toml) {
  auto c = experts::parse_model_config(toml, "<test>");
  if (!c)
    FAIL(c.error().message);
  return *c;
}

/// Every threshold layer's tau at the median of its first step's scores in `traces`: the
/// threshold decides both ways on the batch, and no score sits within reach of a
/// finite-difference step.
inline void median_thresholds(experts::basic_model<double>& m,
                              const std::vector<experts::layer_trace<double>>& traces) {
  using namespace experts;
  std::map<size_t, bool> done;
  for (auto& tr : traces) {
    const auto& lc = m.config.layers[tr.config_layer];
    if (lc.kind != layer_kind::eoe || lc.mode != activation_mode::threshold || done[tr.config_layer])
      continue;
    done[tr.config_layer] = true;
    for (Eigen::Index e = 0; e < tr.scores.cols(); ++e) {
      std::vector<double> s(tr.scores.col(e).begin(), tr.scores.col(e).end());
      std::sort(s.begin(), s.end());
      m.layers[tr.config_layer].tau(0, e) = (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2;
    }
  }
}

struct check_stats {
  size_t checked = 0;
  double worst = 0;
  std::string worst_at;
};

/// Compares the analytic gradient g of loss(m) with central differences (h = 1e-6) on
/// `samples` entries of every tensor (all of a smaller one), skipping tensors whose names end
/// in one of `skip` (calibrated, not learned). Relative error, except that differences below
/// 1e-9 (the noise of central differences in double) count as 0.
template <class Loss>
check_stats gradient_check(experts::basic_model<double>& m, const experts::basic_model<double>& g,
                           Loss loss, Eigen::Index samples, std::vector<std::string> skip) {
  using dmatrix = basic_matrix<double>;
  std::vector<std::pair<std::string, dmatrix*>> params;
  std::vector<const dmatrix*> grads;
  experts::for_each_parameter(m, [&](const std::string& n, dmatrix& t) { params.emplace_back(n, &t); });
  experts::for_each_parameter(g, [&](const std::string&, const dmatrix& t) { grads.push_back(&t); });
  check_stats st;
  experts::rng pick{99};
  for (size_t p = 0; p < params.size(); ++p) {
    auto& [name, t] = params[p];
    if (std::any_of(skip.begin(), skip.end(), [&](auto& s) { return name.ends_with(s); }))
      continue;
    const Eigen::Index n = t->size(), count = std::min<Eigen::Index>(n, samples);
    for (Eigen::Index s = 0; s < count; ++s) {
      const Eigen::Index i = n <= samples ? s : static_cast<Eigen::Index>(pick.next() % n);
      const double h = 1e-6, keep = t->data()[i];
      t->data()[i] = keep + h;
      const double up = loss(m);
      t->data()[i] = keep - h;
      const double down = loss(m);
      t->data()[i] = keep;
      const double numeric = (up - down) / (2 * h), analytic = grads[p]->data()[i];
      const double diff = std::abs(numeric - analytic);
      const double err = diff <= 1e-9 ? 0.0 : diff / std::max(std::abs(numeric), std::abs(analytic));
      ++st.checked;
      if (err > st.worst) {
        st.worst = err;
        st.worst_at = name + "[" + std::to_string(i) + "] analytic " + std::to_string(analytic)
                      + " numeric " + std::to_string(numeric);
      }
    }
  }
  return st;
}

} // namespace eoe::test
