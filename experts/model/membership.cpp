#include "experts/model/membership.hpp"

#include "experts/nn/hash_routing.hpp"
#include "experts/base/rng.hpp"

#include <cmath>

namespace eoe::experts {

namespace {

expected<void> check_eoe(const model& m, size_t layer, const char* what) {
  if (layer >= m.config.layers.size())
    return fail(errc::data_invalid, std::string{what} + ": the model has no layer "
                                      + std::to_string(layer));
  if (m.config.layers[layer].kind != layer_kind::eoe)
    return fail(errc::data_invalid,
                std::string{what} + ": layer " + std::to_string(layer) + " is a \""
                  + std::string{to_string(m.config.layers[layer].kind)}
                  + "\" layer; experts join and leave eoe layers only (a router's or a hash's "
                    "choice of every other expert would change)");
  return {};
}

/// Appends a column to a (rows, E) matrix.
matrix with_column(const matrix& t, const std::vector<float>& col) {
  matrix out(t.rows(), t.cols() + 1);
  out.leftCols(t.cols()) = t;
  for (Eigen::Index r = 0; r < t.rows(); ++r)
    out(r, t.cols()) = col.empty() ? 1.0f : col[static_cast<size_t>(r)];
  return out;
}

/// Appends a row to an (E, cols) matrix.
matrix with_row(const matrix& t, const std::vector<float>& row) {
  matrix out(t.rows() + 1, t.cols());
  out.topRows(t.rows()) = t;
  for (Eigen::Index c = 0; c < t.cols(); ++c)
    out(t.rows(), c) = row.empty() ? 1.0f : row[static_cast<size_t>(c)];
  return out;
}

matrix without_column(const matrix& t, Eigen::Index c) {
  matrix out(t.rows(), t.cols() - 1);
  out.leftCols(c) = t.leftCols(c);
  out.rightCols(t.cols() - c - 1) = t.rightCols(t.cols() - c - 1);
  return out;
}

matrix without_row(const matrix& t, Eigen::Index r) {
  matrix out(t.rows() - 1, t.cols());
  out.topRows(r) = t.topRows(r);
  out.bottomRows(t.rows() - r - 1) = t.bottomRows(t.rows() - r - 1);
  return out;
}

} // namespace

ffn_expert zero_expert(const model& m, size_t layer, std::uint64_t seed) {
  const auto& lc = m.config.layers.at(layer);
  const Eigen::Index d = m.config.dim, r = lc.rank, h = lc.hidden;
  const Eigen::Index first_in = r > 0 ? r : d;
  ffn_expert e;
  if (r > 0)
    e.a = matrix::Zero(d, r);
  e.w1.resize(first_in, h);
  rng g{stable_hash(seed, 0x7a11ull + layer)};
  const double stddev = 1.0 / std::sqrt(static_cast<double>(first_in));
  for (Eigen::Index i = 0; i < e.w1.size(); ++i)
    e.w1.data()[i] = static_cast<float>(g.normal() * stddev);
  if (r == 0) // not factored: its scoring columns of W1
    e.w1.leftCols(lc.score_columns).setZero();
  e.w2 = matrix::Zero(h, d);
  if (lc.bias) {
    e.b1 = matrix::Zero(1, h);
    e.b2 = matrix::Zero(1, d);
  }
  return e;
}

expected<model> with_expert(const model& m, size_t layer, const ffn_expert& e,
                            const expert_entries& x) {
  if (auto ok = check_eoe(m, layer, "add expert"); !ok)
    return eoe::unexpected(ok.error());
  const auto& lc = m.config.layers[layer];
  const Eigen::Index d = m.config.dim;
  const bool factored = lc.rank > 0;
  if ((factored ? e.a.rows() != d || e.a.cols() != lc.rank : e.a.size() != 0)
      || e.w1.rows() != (factored ? lc.rank : d) || e.w1.cols() != lc.hidden
      || e.w2.rows() != lc.hidden || e.w2.cols() != d
      || (lc.bias && (e.b1.cols() != lc.hidden || e.b2.cols() != d)))
    return fail(errc::checkpoint_mismatch,
                "add expert: the expert's shapes do not fit layer " + std::to_string(layer)
                  + " (D=" + std::to_string(d)
                  + (factored ? ", rank " + std::to_string(lc.rank) : std::string{", not factored"})
                  + ", H="
                  + std::to_string(lc.hidden) + (lc.bias ? ", with biases)" : ", no biases)"));
  model out = m;
  auto& oc = out.config.layers[layer];
  auto& lp = out.layers[layer];
  lp.experts.push_back(e);
  ++oc.experts;
  if (oc.mode == activation_mode::threshold) {
    oc.tau.push_back(x.tau);
    lp.tau = with_column(lp.tau, {x.tau});
  } else {
    lp.select_bias = with_column(lp.select_bias, {x.select_bias});
  }
  lp.gate_bias = with_column(lp.gate_bias, {x.gate_bias});
  if (oc.affinity)
    lp.affinity = with_column(lp.affinity, x.affinity_in);
  if (layer + 1 < out.layers.size() && out.config.layers[layer + 1].affinity)
    out.layers[layer + 1].affinity = with_row(out.layers[layer + 1].affinity, x.affinity_out);
  return out;
}

expected<model> with_clone(const model& m, size_t layer, size_t position) {
  if (auto ok = check_eoe(m, layer, "clone expert"); !ok)
    return eoe::unexpected(ok.error());
  const auto& lc = m.config.layers[layer];
  if (position >= static_cast<size_t>(lc.experts))
    return fail(errc::data_invalid, "clone expert: layer " + std::to_string(layer) + " has "
                                      + std::to_string(lc.experts) + " experts, no position "
                                      + std::to_string(position));
  if (lc.mode != activation_mode::threshold)
    return fail(errc::data_invalid,
                "clone expert: layer " + std::to_string(layer)
                  + " runs top-k; a clone ties its original and would take a slot another "
                    "expert holds, so only threshold layers split without changing outputs");
  const auto& lp = m.layers[layer];
  const auto p = static_cast<Eigen::Index>(position);
  const float halved = lp.gate_bias(0, p) - static_cast<float>(std::log(2.0));
  expert_entries x;
  x.tau = lp.tau(0, p);
  x.gate_bias = halved;
  if (lc.affinity)
    for (Eigen::Index r = 0; r < lp.affinity.rows(); ++r)
      x.affinity_in.push_back(lp.affinity(r, p));
  if (layer + 1 < m.layers.size() && m.config.layers[layer + 1].affinity) {
    const auto& next = m.layers[layer + 1].affinity;
    for (Eigen::Index c = 0; c < next.cols(); ++c)
      x.affinity_out.push_back(next(p, c));
  }
  auto out = with_expert(m, layer, lp.experts[position], x);
  if (out)
    out->layers[layer].gate_bias(0, p) = halved;
  return out;
}

expected<model> without_expert(const model& m, size_t layer, size_t position) {
  if (layer >= m.config.layers.size())
    return fail(errc::data_invalid, "remove expert: the model has no layer " + std::to_string(layer));
  const auto& lc = m.config.layers[layer];
  if (lc.kind == layer_kind::dense)
    return fail(errc::data_invalid, "remove expert: layer " + std::to_string(layer)
                                      + " is dense: its one FFN cannot go");
  if (position >= static_cast<size_t>(lc.experts))
    return fail(errc::data_invalid, "remove expert: layer " + std::to_string(layer) + " has "
                                      + std::to_string(lc.experts) + " experts, no position "
                                      + std::to_string(position));
  if (lc.experts == 1)
    return fail(errc::data_invalid, "remove expert: it is the last expert of layer "
                                      + std::to_string(layer));
  const bool picks_k = lc.kind != layer_kind::eoe || lc.mode == activation_mode::topk;
  if (picks_k && lc.k > lc.experts - 1)
    return fail(errc::data_invalid,
                "remove expert: layer " + std::to_string(layer) + " runs top-" + std::to_string(lc.k)
                  + " and would keep " + std::to_string(lc.experts - 1) + " expert(s)");
  model out = m;
  auto& oc = out.config.layers[layer];
  auto& lp = out.layers[layer];
  const auto p = static_cast<Eigen::Index>(position);
  lp.experts.erase(lp.experts.begin() + p);
  --oc.experts;
  if (oc.kind == layer_kind::router)
    lp.router = without_column(lp.router, p);
  if (oc.kind == layer_kind::eoe) {
    if (oc.mode == activation_mode::threshold) {
      oc.tau.erase(oc.tau.begin() + p);
      lp.tau = without_column(lp.tau, p);
    } else {
      lp.select_bias = without_column(lp.select_bias, p);
    }
    lp.gate_bias = without_column(lp.gate_bias, p);
  }
  if (oc.affinity)
    lp.affinity = without_column(lp.affinity, p);
  if (layer + 1 < out.layers.size() && out.config.layers[layer + 1].affinity)
    out.layers[layer + 1].affinity = without_row(out.layers[layer + 1].affinity, p);
  return out;
}

} // namespace eoe::experts
