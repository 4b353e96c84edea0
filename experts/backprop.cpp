#include "experts/backprop.hpp"

#include "experts/forward.hpp"
#include "experts/hash_routing.hpp"
#include "experts/rng.hpp"
#include "experts/router.hpp"
#include "experts/self_activation.hpp"
#include "experts/weighted_output.hpp"

#include <cmath>
#include <numeric>
#include <stdexcept>

namespace eoe::experts {

namespace {

template <class S>
using mat = basic_matrix<S>;

/// What one expert computed, kept for its backward.
template <class S>
struct expert_tape {
  std::vector<std::int32_t> rows;
  std::vector<S> gates; ///< (n)
  mat<S> first_in;      ///< (n, r) u rows when factored, else (n, D) input rows
  mat<S> z;             ///< (n, H) before the activation
  mat<S> act;           ///< (n, H) after it (and after dropout)
  mat<S> keep;          ///< (n, H) dropout mask, 0 or 1 / (1 - p); empty without dropout
  mat<S> y;             ///< (n, D) the output before gating
};

/// One unrolled layer's tape.
template <class S>
struct layer_tape {
  size_t cl = 0;         ///< config layer
  mat<S> h_prev;         ///< h_{l-1}: the stream before the previous layer's contributions
  mat<S> h_next;         ///< h_l = h_{l-1} + sum of the previous layer's contributions
  std::vector<mat<S>> mixed; ///< eoe + affinity: each expert's own input (T, D)
  std::vector<mat<S>> u;     ///< eoe: x A per expert (T, r)
  basic_router_decision<S> router;
  std::vector<expert_tape<S>> experts;
  std::vector<basic_weighted_output<S>> out; ///< g y per expert of this layer
};

template <class S>
void gather(const mat<S>& src, const std::vector<std::int32_t>& rows, mat<S>& out) {
  out.resize(static_cast<Eigen::Index>(rows.size()), src.cols());
  for (size_t r = 0; r < rows.size(); ++r)
    out.row(static_cast<Eigen::Index>(r)) = src.row(rows[r]);
}

template <class S>
void add_bias(mat<S>& x, const mat<S>& b) {
  if (b.size())
    x.rowwise() += b.row(0);
}

template <class S>
S activate(kernels::activation a, S v) {
  if (a == kernels::activation::silu)
    return v / (S{1} + std::exp(-v));
  return S{0.5} * v * (S{1} + std::erf(v * S{0.70710678118654752440}));
}

template <class S>
S activate_derivative(kernels::activation a, S v) {
  if (a == kernels::activation::silu) {
    const S sig = S{1} / (S{1} + std::exp(-v));
    return sig * (S{1} + v * (S{1} - sig));
  }
  const S cdf = S{0.5} * (S{1} + std::erf(v * S{0.70710678118654752440}));
  const S pdf = std::exp(S{-0.5} * v * v) * S{0.39894228040143267794};
  return cdf + v * pdf;
}

/// Runs every expert on its active rows; input_of(e) is expert e's first-projection input.
template <class S, class InputOf>
void run_experts(const basic_layer_params<S>& lp, const layer_config& lc,
                 const basic_activation_set<S>& active, layer_tape<S>& tape,
                 const loss_options& opt, size_t unrolled, InputOf&& input_of) {
  const auto e_count = lp.experts.size();
  tape.experts.assign(e_count, {});
  tape.out.assign(e_count, {});
  for (size_t e = 0; e < e_count; ++e) {
    auto& et = tape.experts[e];
    active.tokens_of(static_cast<std::int32_t>(e), et.rows, et.gates);
    if (et.rows.empty())
      continue;
    const auto& w = lp.experts[e];
    gather(input_of(e), et.rows, et.first_in);
    et.z.noalias() = et.first_in * w.w1;
    add_bias(et.z, w.b1);
    et.act = et.z.unaryExpr([&](S v) { return activate(lc.act, v); });
    if (opt.dropout > 0) {
      rng r{stable_hash(opt.dropout_seed, (static_cast<std::uint64_t>(unrolled) << 20) | e)};
      const S scale = static_cast<S>(1.0 / (1.0 - opt.dropout));
      et.keep.resize(et.act.rows(), et.act.cols());
      for (Eigen::Index i = 0; i < et.keep.size(); ++i)
        et.keep.data()[i] = r.uniform() < opt.dropout ? S{0} : scale;
      et.act.array() *= et.keep.array();
    }
    et.y.noalias() = et.act * w.w2;
    add_bias(et.y, w.b2);
    auto& c = tape.out[e];
    c.rows = et.rows;
    c.values = et.y;
    for (size_t r = 0; r < et.gates.size(); ++r)
      c.values.row(static_cast<Eigen::Index>(r)) *= et.gates[r];
  }
}

/// Backward of one expert: from d(g y) on its rows to its weights, its input rows and its
/// gates. Returns d first_in (n, r|D); writes dgates (n).
template <class S>
mat<S> expert_backward(const basic_ffn_expert<S>& w, basic_ffn_expert<S>& gw,
                       const layer_config& lc, const expert_tape<S>& et, const mat<S>& d_out,
                       std::vector<S>& dgates) {
  const auto n = static_cast<Eigen::Index>(et.rows.size());
  mat<S> dy = d_out;
  dgates.resize(static_cast<size_t>(n));
  for (Eigen::Index r = 0; r < n; ++r) {
    dgates[r] = d_out.row(r).dot(et.y.row(r));
    dy.row(r) *= et.gates[r];
  }
  gw.w2.noalias() += et.act.transpose() * dy;
  if (gw.b2.size())
    gw.b2 += dy.colwise().sum();
  mat<S> dz = dy * w.w2.transpose();
  if (et.keep.size())
    dz.array() *= et.keep.array();
  for (Eigen::Index i = 0; i < dz.size(); ++i)
    dz.data()[i] *= activate_derivative(lc.act, et.z.data()[i]);
  gw.w1.noalias() += et.first_in.transpose() * dz;
  if (gw.b1.size())
    gw.b1 += dz.colwise().sum();
  return dz * w.w1.transpose();
}

/// Gradients of this layer's contributions, one (rows, D) block per expert.
template <class S>
std::vector<mat<S>> zero_grads_like(const std::vector<basic_weighted_output<S>>& cs) {
  std::vector<mat<S>> g(cs.size());
  for (size_t i = 0; i < cs.size(); ++i)
    g[i] = mat<S>::Zero(cs[i].values.rows(), cs[i].values.cols());
  return g;
}

} // namespace

template <class S>
step_result<S> loss_and_gradient(const basic_model<S>& m, const basic_matrix<S>& x,
                                 std::span<const std::uint8_t> labels, const loss_options& opt,
                                 basic_model<S>* grad, std::span<const std::uint64_t> token_ids) {
  const auto& c = m.config;
  const auto batch = x.rows();
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
      const auto& pending = tapes.empty() ? none : tapes.back().out;
      layer_tape<S> tape;
      tape.cl = cl;
      tape.h_next = h;
      scatter_add(tape.h_next, pending);
      layer_trace<S> trace;
      trace.config_layer = cl;
      switch (lc.kind) {
        case layer_kind::eoe: {
          tape.u.resize(static_cast<size_t>(lc.experts));
          trace.scores.resize(batch, lc.experts);
          if (lc.affinity) {
            tape.h_prev = h;
            tape.mixed.resize(static_cast<size_t>(lc.experts));
          }
          for (int e = 0; e < lc.experts; ++e) {
            const mat<S>* in = &tape.h_next;
            if (lc.affinity) {
              auto& mix = tape.mixed[e];
              mix = h;
              scatter_add(mix, pending, lp.affinity.data() + e, lp.affinity.cols());
              in = &mix;
            }
            tape.u[e].noalias() = *in * lp.experts[e].a;
            trace.scores.col(e) = tape.u[e].rowwise().norm();
          }
          const std::span<const S> gate_bias{lp.gate_bias.data(),
                                             static_cast<size_t>(lp.gate_bias.size())};
          trace.active = lc.mode == activation_mode::topk
                           ? select_topk<S>(trace.scores, lc.k,
                                            {lp.select_bias.data(),
                                             static_cast<size_t>(lp.select_bias.size())},
                                            gate_bias)
                           : select_threshold<S>(
                               trace.scores, {lp.tau.data(), static_cast<size_t>(lp.tau.size())},
                               gate_bias);
          run_experts(lp, lc, trace.active, tape, opt, tapes.size(), [&](size_t e) -> const mat<S>& {
            return tape.u[e];
          });
          break;
        }
        case layer_kind::router: {
          mat<S> logits = tape.h_next * lp.router;
          tape.router = route_topk(logits, lc.k);
          trace.scores = tape.router.probs;
          trace.active = tape.router.active;
          res.auxiliary += static_cast<S>(opt.balance_coef) * tape.router.balance_loss
                           + static_cast<S>(opt.z_coef) * tape.router.z_loss;
          run_experts(lp, lc, trace.active, tape, opt, tapes.size(), [&](size_t) -> const mat<S>& {
            return tape.h_next;
          });
          break;
        }
        case layer_kind::hash: {
          const auto hashed =
            route_hash(token_ids, lc.experts, lc.k, hash_seed(c, tapes.size()));
          for (size_t t = 0; t < hashed.tokens(); ++t) {
            std::vector<S> g(hashed.gates_of(t).size(), S{1} / static_cast<S>(lc.k));
            trace.active.push_token(hashed.experts_of(t), g);
          }
          run_experts(lp, lc, trace.active, tape, opt, tapes.size(), [&](size_t) -> const mat<S>& {
            return tape.h_next;
          });
          break;
        }
        case layer_kind::dense: {
          const std::int32_t only[] = {0};
          const S one[] = {S{1}};
          for (Eigen::Index t = 0; t < batch; ++t)
            trace.active.push_token(only, one);
          run_experts(lp, lc, trace.active, tape, opt, tapes.size(), [&](size_t) -> const mat<S>& {
            return tape.h_next;
          });
          break;
        }
      }
      h = tape.h_next;
      tapes.push_back(std::move(tape));
      res.layers.push_back(std::move(trace));
    }
  }
  mat<S> final_h = h;
  if (!tapes.empty())
    scatter_add(final_h, tapes.back().out);
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
    dout = zero_grads_like(tapes.back().out);
    for (size_t i = 0; i < dout.size(); ++i)
      for (size_t r = 0; r < tapes.back().out[i].rows.size(); ++r)
        dout[i].row(static_cast<Eigen::Index>(r)) = dh.row(tapes.back().out[i].rows[r]);
  }

  for (size_t li = tapes.size(); li-- > 0;) {
    auto& tape = tapes[li];
    const auto& trace = res.layers[li];
    const auto& lc = c.layers[tape.cl];
    const auto& lp = m.layers[tape.cl];
    auto& gp = g.layers[tape.cl];
    // dh is d loss / d h_next of this layer (the stream this layer's contributions add to).
    mat<S> d_shared = mat<S>::Zero(batch, c.dim); // d loss / d h_next via the layer's inputs
    std::vector<mat<S>> d_mixed;                  // eoe + affinity: per expert input
    // Gate gradients per (token, active entry), in the activation set's layout.
    std::vector<S> dgate(trace.active.experts.size(), S{0});
    std::vector<S> dg_rows;

    auto backprop_experts = [&](auto&& on_input_grad) {
      for (size_t e = 0; e < tape.experts.size(); ++e) {
        const auto& et = tape.experts[e];
        if (et.rows.empty())
          continue;
        mat<S> din = expert_backward(lp.experts[e], gp.experts[e], lc, et, dout[e], dg_rows);
        on_input_grad(e, et, din);
        // Scatter the gate gradients to the activation set's entries.
        for (size_t r = 0; r < et.rows.size(); ++r) {
          const auto t = static_cast<size_t>(et.rows[r]);
          for (auto i = trace.active.offsets[t]; i < trace.active.offsets[t + 1]; ++i)
            if (trace.active.experts[i] == static_cast<std::int32_t>(e))
              dgate[i] = dg_rows[r];
        }
      }
    };
    auto scatter_rows = [](mat<S>& dst, const std::vector<std::int32_t>& rows, const mat<S>& src) {
      for (size_t r = 0; r < rows.size(); ++r)
        dst.row(rows[r]) += src.row(static_cast<Eigen::Index>(r));
    };

    switch (lc.kind) {
      case layer_kind::eoe: {
        std::vector<mat<S>> du(tape.u.size());
        for (size_t e = 0; e < du.size(); ++e)
          du[e] = mat<S>::Zero(tape.u[e].rows(), tape.u[e].cols());
        backprop_experts([&](size_t e, const expert_tape<S>& et, const mat<S>& din) {
          scatter_rows(du[e], et.rows, din);
        });
        // Gates are the softmax of the active experts' score + gate bias: d(logit) =
        // g (dg - sum g dg) reaches the gate bias and the score; a score is ||u||:
        // du += ds u / ||u||.
        for (size_t t = 0; t < trace.active.tokens(); ++t) {
          const auto b = trace.active.offsets[t], e_end = trace.active.offsets[t + 1];
          S dot = 0;
          for (auto i = b; i < e_end; ++i)
            dot += trace.active.gates[i] * dgate[i];
          for (auto i = b; i < e_end; ++i) {
            const auto e = trace.active.experts[i];
            const S ds = trace.active.gates[i] * (dgate[i] - dot);
            gp.gate_bias(0, e) += ds;
            const S s = trace.scores(static_cast<Eigen::Index>(t), e);
            if (s > S{0})
              du[e].row(static_cast<Eigen::Index>(t)) +=
                (ds / s) * tape.u[e].row(static_cast<Eigen::Index>(t));
          }
        }
        if (lc.affinity)
          d_mixed.resize(du.size());
        for (size_t e = 0; e < du.size(); ++e) {
          const mat<S>& in = lc.affinity ? tape.mixed[e] : tape.h_next;
          gp.experts[e].a.noalias() += in.transpose() * du[e];
          if (lc.affinity)
            d_mixed[e].noalias() = du[e] * lp.experts[e].a.transpose();
          else
            d_shared.noalias() += du[e] * lp.experts[e].a.transpose();
        }
        break;
      }
      case layer_kind::router: {
        backprop_experts([&](size_t, const expert_tape<S>& et, const mat<S>& din) {
          scatter_rows(d_shared, et.rows, din);
        });
        const auto& rd = tape.router;
        const auto experts = rd.probs.cols();
        mat<S> dprobs = mat<S>::Zero(batch, experts);
        mat<S> dlog = mat<S>::Zero(batch, experts);
        for (size_t t = 0; t < trace.active.tokens(); ++t) {
          const auto b = trace.active.offsets[t], e_end = trace.active.offsets[t + 1];
          if (lc.k == 1) {
            // gate = p_e itself
            for (auto i = b; i < e_end; ++i)
              dprobs(static_cast<Eigen::Index>(t), trace.active.experts[i]) += dgate[i];
          } else {
            // gates = softmax over the selected logits
            S dot = 0;
            for (auto i = b; i < e_end; ++i)
              dot += trace.active.gates[i] * dgate[i];
            for (auto i = b; i < e_end; ++i)
              dlog(static_cast<Eigen::Index>(t), trace.active.experts[i]) +=
                trace.active.gates[i] * (dgate[i] - dot);
          }
        }
        // Balance loss E sum f_e P_e with P_e = mean_t p_te (f is a count: no gradient).
        const S bal = static_cast<S>(opt.balance_coef) * static_cast<S>(experts)
                      / static_cast<S>(batch);
        for (Eigen::Index e = 0; e < experts; ++e)
          dprobs.col(e).array() += bal * rd.load[e];
        // Through the softmax: dlogit = p (dp - <dp, p>); z-loss: 2 z lse p / T.
        const S zc = static_cast<S>(opt.z_coef) * S{2} / static_cast<S>(batch);
        for (Eigen::Index t = 0; t < batch; ++t) {
          const S dot = dprobs.row(t).dot(rd.probs.row(t));
          for (Eigen::Index e = 0; e < experts; ++e)
            dlog(t, e) += rd.probs(t, e) * (dprobs(t, e) - dot) + zc * rd.lse[t] * rd.probs(t, e);
        }
        gp.router.noalias() += tape.h_next.transpose() * dlog;
        d_shared.noalias() += dlog * lp.router.transpose();
        break;
      }
      case layer_kind::hash:
      case layer_kind::dense:
        backprop_experts([&](size_t, const expert_tape<S>& et, const mat<S>& din) {
          scatter_rows(d_shared, et.rows, din);
        });
        break;
    }

    // Into the previous layer: h_next = h_prev + sum_i C_i, and with affinity each expert j
    // read h_prev + sum_i a_ij C_i.
    dh += d_shared;
    mat<S> dh_prev = dh;
    std::vector<mat<S>> dprev;
    if (li > 0) {
      const auto& prev = tapes[li - 1].out;
      dprev = zero_grads_like(prev);
      for (size_t i = 0; i < prev.size(); ++i)
        for (size_t r = 0; r < prev[i].rows.size(); ++r)
          dprev[i].row(static_cast<Eigen::Index>(r)) = dh.row(prev[i].rows[r]);
      if (lc.affinity) {
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
