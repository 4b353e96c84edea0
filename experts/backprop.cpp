#include "experts/backprop.hpp"

#include "experts/forward.hpp"
#include "experts/weighted_output.hpp"

#include <cmath>
#include <numeric>
#include <stdexcept>

namespace eoe::experts {

namespace {

template <class S>
using mat = basic_matrix<S>;

/// One unrolled layer's tape.
template <class S>
struct layer_tape {
  size_t cl = 0;         ///< config layer
  mat<S> h_next;         ///< h_l = h_{l-1} + sum of the previous layer's contributions
  std::vector<mat<S>> mixed; ///< eoe + affinity: each expert's own input (T, D)
  expert_layer_tape<S> layer;

  /// What the layer's experts read: h_next, or each its own mix.
  std::vector<const mat<S>*> inputs() const {
    std::vector<const mat<S>*> in;
    if (mixed.empty())
      in.push_back(&h_next);
    for (auto& m : mixed)
      in.push_back(&m);
    return in;
  }
};

template <class S>
void add_bias(mat<S>& x, const mat<S>& b) {
  if (b.size())
    x.rowwise() += b.row(0);
}

} // namespace

template <class S>
step_result<S> loss_and_gradient(const basic_model<S>& m, const basic_matrix<S>& x,
                                 std::span<const std::uint8_t> labels, const loss_options& opt,
                                 basic_model<S>* grad, std::span<const std::uint64_t> token_ids) {
  const auto& c = m.config;
  const auto batch = x.rows();
  if (c.is_lm())
    throw std::invalid_argument("loss_and_gradient: '" + c.name
                                + "' is a language model (experts/lm_backprop.hpp trains it)");
  if (c.classes <= 0)
    throw std::invalid_argument("loss_and_gradient: the model has no head (classes = 0)");
  if (static_cast<Eigen::Index>(labels.size()) != batch)
    throw std::invalid_argument("loss_and_gradient: one label per example");
  if (x.cols() != (c.input_dim > 0 ? c.input_dim : c.dim))
    throw std::invalid_argument("loss_and_gradient: input width differs from the model's");
  std::vector<std::uint64_t> row_ids;
  if (token_ids.empty()) {
    row_ids.resize(static_cast<size_t>(batch));
    std::iota(row_ids.begin(), row_ids.end(), 0);
    token_ids = row_ids;
  }

  // ---- forward with tape
  mat<S> h;
  if (c.input_dim > 0) {
    h.noalias() = x * m.embed_w;
    add_bias(h, m.embed_b);
  } else {
    h = x;
  }
  std::vector<layer_tape<S>> tapes;
  tapes.reserve(c.unrolled_layers());
  step_result<S> res;
  const std::vector<basic_weighted_output<S>> none;
  for (size_t cl = 0; cl < c.layers.size(); ++cl) {
    const auto& lc = c.layers[cl];
    const auto& lp = m.layers[cl];
    for (int step = 0; step < lc.steps; ++step) {
      const auto& pending = tapes.empty() ? none : tapes.back().layer.out;
      layer_tape<S> tape;
      tape.cl = cl;
      tape.h_next = h;
      scatter_add(tape.h_next, pending);
      if (lc.affinity) {
        // Each expert mixes its own input from the previous layer's contributions.
        tape.mixed.resize(static_cast<size_t>(lc.experts));
        for (int e = 0; e < lc.experts; ++e) {
          tape.mixed[e] = h;
          scatter_add(tape.mixed[e], pending, lp.affinity.data() + e, lp.affinity.cols());
        }
      }
      layer_trace<S> trace;
      trace.config_layer = cl;
      res.auxiliary += expert_layer_forward<S>(lp, lc, tape.inputs(), token_ids,
                                               hash_seed(c, tapes.size()), opt, tapes.size(),
                                               tape.layer, trace);
      h = tape.h_next;
      tapes.push_back(std::move(tape));
      res.layers.push_back(std::move(trace));
    }
  }
  mat<S> final_h = h;
  if (!tapes.empty())
    scatter_add(final_h, tapes.back().layer.out);
  res.logits.noalias() = final_h * m.head_w;
  add_bias(res.logits, m.head_b);

  // ---- loss: cross-entropy with label smoothing, mean over the batch
  const auto classes = res.logits.cols();
  const S eps = static_cast<S>(opt.label_smoothing);
  mat<S> dlogits(batch, classes);
  S ce = 0;
  for (Eigen::Index t = 0; t < batch; ++t) {
    const S mx = res.logits.row(t).maxCoeff();
    S sum = 0;
    for (Eigen::Index k = 0; k < classes; ++k)
      sum += std::exp(res.logits(t, k) - mx);
    const S lse = mx + std::log(sum);
    Eigen::Index best = 0;
    res.logits.row(t).maxCoeff(&best);
    res.correct += best == labels[t];
    for (Eigen::Index k = 0; k < classes; ++k) {
      const S target = (k == labels[t] ? S{1} - eps : S{0}) + eps / static_cast<S>(classes);
      ce -= target * (res.logits(t, k) - lse);
      dlogits(t, k) = (std::exp(res.logits(t, k) - lse) - target) / static_cast<S>(batch);
    }
  }
  res.cross_entropy = ce / static_cast<S>(batch);
  res.loss = res.cross_entropy + res.auxiliary;
  if (!grad)
    return res;

  // ---- backward
  auto& g = *grad;
  if (g.config == c)
    for_each_parameter(g, [](const std::string&, mat<S>& t) { t.setZero(); });
  else
    g = zero_model<S>(c);
  g.head_w.noalias() = final_h.transpose() * dlogits;
  g.head_b = dlogits.colwise().sum();
  mat<S> dh = dlogits * m.head_w.transpose(); // d loss / d (stream after the last layer)
  // d loss / d (each contribution of the layer just walked back from)
  std::vector<mat<S>> dout;
  if (!tapes.empty()) {
    dout = zero_grads_like(tapes.back().layer.out);
    for (size_t i = 0; i < dout.size(); ++i)
      for (size_t r = 0; r < tapes.back().layer.out[i].rows.size(); ++r)
        dout[i].row(static_cast<Eigen::Index>(r)) = dh.row(tapes.back().layer.out[i].rows[r]);
  }

  for (size_t li = tapes.size(); li-- > 0;) {
    auto& tape = tapes[li];
    const auto& lc = c.layers[tape.cl];
    const auto& lp = m.layers[tape.cl];
    // dh is d loss / d h_next of this layer (the stream this layer's contributions add to).
    mat<S> d_shared = mat<S>::Zero(batch, c.dim); // d loss / d h_next via the layer's inputs
    std::vector<mat<S>> d_mixed;                  // eoe + affinity: per expert input
    std::vector<mat<S>*> d_inputs{&d_shared};
    if (lc.affinity) {
      d_mixed.assign(tape.mixed.size(), mat<S>::Zero(batch, c.dim));
      d_inputs.clear();
      for (auto& d : d_mixed)
        d_inputs.push_back(&d);
    }
    expert_layer_backward<S>(lp, lc, tape.inputs(), tape.layer, res.layers[li], dout, opt,
                             g.layers[tape.cl], d_inputs);

    // Into the previous layer: h_next = h_prev + sum_i C_i, and with affinity each expert j
    // read h_prev + sum_i a_ij C_i.
    dh += d_shared;
    mat<S> dh_prev = dh;
    std::vector<mat<S>> dprev;
    if (li > 0) {
      const auto& prev = tapes[li - 1].layer.out;
      dprev = zero_grads_like(prev);
      for (size_t i = 0; i < prev.size(); ++i)
        for (size_t r = 0; r < prev[i].rows.size(); ++r)
          dprev[i].row(static_cast<Eigen::Index>(r)) = dh.row(prev[i].rows[r]);
      if (lc.affinity) {
        auto& gp = g.layers[tape.cl];
        for (size_t j = 0; j < d_mixed.size(); ++j) {
          dh_prev += d_mixed[j];
          for (size_t i = 0; i < prev.size(); ++i) {
            const S a = lp.affinity(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
            S da = 0;
            for (size_t r = 0; r < prev[i].rows.size(); ++r) {
              const auto row = static_cast<Eigen::Index>(r);
              da += d_mixed[j].row(prev[i].rows[r]).dot(prev[i].values.row(row));
              dprev[i].row(row) += a * d_mixed[j].row(prev[i].rows[r]);
            }
            gp.affinity(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) += da;
          }
        }
      }
    } else if (lc.affinity) {
      throw std::logic_error("loss_and_gradient: affinity on the first layer");
    }
    dh = std::move(dh_prev);
    dout = std::move(dprev);
  }

  if (c.input_dim > 0) {
    g.embed_w.noalias() = x.transpose() * dh;
    g.embed_b = dh.colwise().sum();
  }
  return res;
}

template step_result<float>
loss_and_gradient<float>(const basic_model<float>&, const basic_matrix<float>&,
                         std::span<const std::uint8_t>, const loss_options&, basic_model<float>*,
                         std::span<const std::uint64_t>);
template step_result<double>
loss_and_gradient<double>(const basic_model<double>&, const basic_matrix<double>&,
                          std::span<const std::uint8_t>, const loss_options&,
                          basic_model<double>*, std::span<const std::uint64_t>);

} // namespace eoe::experts
