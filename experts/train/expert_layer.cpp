#include "experts/train/expert_layer.hpp"

#include "experts/nn/hash_routing.hpp"
#include "experts/base/rng.hpp"
#include "experts/nn/self_activation.hpp"
#include "kernels/activation.hpp"

#include <cmath>
#include <stdexcept>

namespace eoe::experts {

namespace {

template <class S>
using mat = basic_matrix<S>;


/// Runs every expert on its active rows; input_of(e) is expert e's first-projection input.
template <class S, class InputOf>
void run_experts(const basic_layer_params<S>& lp, const layer_config& lc,
                 const basic_activation_set<S>& active, expert_layer_tape<S>& tape,
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
    gather_rows(input_of(e), et.rows, et.first_in);
    et.z.noalias() = et.first_in * w.w1;
    add_row_bias(et.z, w.b1);
    et.act = et.z.unaryExpr([&](S v) { return kernels::apply(lc.act, v); });
    if (opt.dropout > 0) {
      rng r{stable_hash(opt.dropout_seed, (static_cast<std::uint64_t>(unrolled) << 20) | e)};
      const S scale = static_cast<S>(1.0 / (1.0 - opt.dropout));
      et.keep.resize(et.act.rows(), et.act.cols());
      for (Eigen::Index i = 0; i < et.keep.size(); ++i)
        et.keep.data()[i] = r.uniform() < opt.dropout ? S{0} : scale;
      et.act.array() *= et.keep.array();
    }
    et.y.noalias() = et.act * w.w2;
    add_row_bias(et.y, w.b2);
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
    dz.data()[i] *= kernels::derivative(lc.act, et.z.data()[i]);
  gw.w1.noalias() += et.first_in.transpose() * dz;
  if (gw.b1.size())
    gw.b1 += dz.colwise().sum();
  return dz * w.w1.transpose();
}

} // namespace

template <class S>
S expert_layer_forward(const basic_layer_params<S>& lp, const layer_config& lc,
                       std::span<const basic_matrix<S>* const> inputs,
                       std::span<const std::uint64_t> token_ids, std::uint64_t hash_seed,
                       const loss_options& opt, size_t unrolled, expert_layer_tape<S>& tape,
                       layer_trace<S>& trace) {
  const auto per_expert = inputs.size() > 1;
  if (inputs.empty() || (per_expert && inputs.size() != lp.experts.size()))
    throw std::invalid_argument("expert_layer_forward: one input, or one per expert");
  const auto& shared = *inputs[0];
  const auto tokens = shared.rows();
  S auxiliary = 0;
  switch (lc.kind) {
    case layer_kind::eoe: {
      // Factored: u = x A, the score the norm of u's first columns, and u feeds B. Not
      // factored: u = x W1[:, :n] (the first n pre-activations before b1) only scores, and an
      // active expert runs on x.
      tape.u.resize(static_cast<size_t>(lc.experts));
      trace.scores.resize(tokens, lc.experts);
      const bool factored = lc.rank > 0;
      const auto n = static_cast<Eigen::Index>(lc.score_columns);
      for (int e = 0; e < lc.experts; ++e) {
        const mat<S>& in = per_expert ? *inputs[e] : shared;
        const auto& w = lp.experts[e];
        if (factored)
          tape.u[e].noalias() = in * w.a;
        else
          tape.u[e].noalias() = in * w.w1.leftCols(n);
        trace.scores.col(e) = tape.u[e].leftCols(n).rowwise().norm();
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
      run_experts(lp, lc, trace.active, tape, opt, unrolled, [&](size_t e) -> const mat<S>& {
        return factored ? tape.u[e] : per_expert ? *inputs[e] : shared;
      });
      if (opt.score_balance_coef > 0 && lc.mode == activation_mode::topk) {
        tape.balance = score_balance(trace.scores, trace.active);
        auxiliary = static_cast<S>(opt.score_balance_coef) * tape.balance.loss;
      }
      break;
    }
    case layer_kind::router: {
      mat<S> logits = shared * lp.router;
      tape.router = route_topk(logits, lc.k);
      trace.scores = tape.router.probs;
      trace.active = tape.router.active;
      auxiliary = static_cast<S>(opt.balance_coef) * tape.router.balance_loss
                  + static_cast<S>(opt.z_coef) * tape.router.z_loss;
      run_experts(lp, lc, trace.active, tape, opt, unrolled,
                  [&](size_t) -> const mat<S>& { return shared; });
      break;
    }
    case layer_kind::hash: {
      const auto hashed = route_hash(token_ids, lc.experts, lc.k, hash_seed);
      for (size_t t = 0; t < hashed.tokens(); ++t) {
        std::vector<S> g(hashed.gates_of(t).size(), S{1} / static_cast<S>(lc.k));
        trace.active.push_token(hashed.experts_of(t), g);
      }
      run_experts(lp, lc, trace.active, tape, opt, unrolled,
                  [&](size_t) -> const mat<S>& { return shared; });
      break;
    }
    case layer_kind::dense: {
      const std::int32_t only[] = {0};
      const S one[] = {S{1}};
      for (Eigen::Index t = 0; t < tokens; ++t)
        trace.active.push_token(only, one);
      run_experts(lp, lc, trace.active, tape, opt, unrolled,
                  [&](size_t) -> const mat<S>& { return shared; });
      break;
    }
    case layer_kind::attention:
      throw std::logic_error("expert_layer_forward: an attention layer has no experts");
  }
  return auxiliary;
}

template <class S>
void expert_layer_backward(const basic_layer_params<S>& lp, const layer_config& lc,
                           std::span<const basic_matrix<S>* const> inputs,
                           const expert_layer_tape<S>& tape, const layer_trace<S>& trace,
                           const std::vector<basic_matrix<S>>& dout, const loss_options& opt,
                           basic_layer_params<S>& gp, std::span<basic_matrix<S>* const> d_inputs) {
  const bool per_expert = inputs.size() > 1;
  if (d_inputs.size() != inputs.size())
    throw std::invalid_argument("expert_layer_backward: one input gradient per input");
  const auto batch = inputs[0]->rows();
  mat<S>& d_shared = *d_inputs[0];
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
      const bool factored = lc.rank > 0;
      const auto n = static_cast<Eigen::Index>(lc.score_columns);
      std::vector<mat<S>> du(tape.u.size());
      for (size_t e = 0; e < du.size(); ++e)
        du[e] = mat<S>::Zero(tape.u[e].rows(), tape.u[e].cols());
      backprop_experts([&](size_t e, const expert_tape<S>& et, const mat<S>& din) {
        scatter_rows(factored ? du[e] : per_expert ? *d_inputs[e] : d_shared, et.rows, din);
      });
      // Gates are the softmax of the active experts' score + gate bias: d(logit) =
      // g (dg - sum g dg) reaches the gate bias and the score. The balance loss reaches every
      // score. A score is ||u[:, :n]||: du[:, :n] += ds u[:, :n] / ||u[:, :n]||.
      mat<S> dscores = mat<S>::Zero(trace.scores.rows(), trace.scores.cols());
      for (size_t t = 0; t < trace.active.tokens(); ++t) {
        const auto b = trace.active.offsets[t], e_end = trace.active.offsets[t + 1];
        S dot = 0;
        for (auto i = b; i < e_end; ++i)
          dot += trace.active.gates[i] * dgate[i];
        for (auto i = b; i < e_end; ++i) {
          const auto e = trace.active.experts[i];
          const S ds = trace.active.gates[i] * (dgate[i] - dot);
          gp.gate_bias(0, e) += ds;
          dscores(static_cast<Eigen::Index>(t), e) += ds;
        }
      }
      if (tape.balance.probs.size())
        add_score_balance_gradient(tape.balance, static_cast<S>(opt.score_balance_coef),
                                   dscores);
      for (Eigen::Index t = 0; t < dscores.rows(); ++t)
        for (Eigen::Index e = 0; e < dscores.cols(); ++e) {
          const S ds = dscores(t, e), s = trace.scores(t, e);
          if (ds != S{0} && s > S{0})
            du[e].row(t).leftCols(n) += (ds / s) * tape.u[e].row(t).leftCols(n);
        }
      for (size_t e = 0; e < du.size(); ++e) {
        const mat<S>& in = per_expert ? *inputs[e] : *inputs[0];
        mat<S>& d_in = per_expert ? *d_inputs[e] : d_shared;
        if (factored) {
          gp.experts[e].a.noalias() += in.transpose() * du[e];
          d_in.noalias() += du[e] * lp.experts[e].a.transpose();
        } else {
          gp.experts[e].w1.leftCols(n).noalias() += in.transpose() * du[e];
          d_in.noalias() += du[e] * lp.experts[e].w1.leftCols(n).transpose();
        }
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
      gp.router.noalias() += inputs[0]->transpose() * dlog;
      d_shared.noalias() += dlog * lp.router.transpose();
      break;
    }
    case layer_kind::hash:
    case layer_kind::dense:
      backprop_experts([&](size_t, const expert_tape<S>& et, const mat<S>& din) {
        scatter_rows(d_shared, et.rows, din);
      });
      break;
    case layer_kind::attention:
      throw std::logic_error("expert_layer_backward: an attention layer has no experts");
  }
}

#define EOE_EXPERT_LAYER_INSTANCE(S)                                                           \
  template S expert_layer_forward<S>(const basic_layer_params<S>&, const layer_config&,       \
                                     std::span<const basic_matrix<S>* const>,                  \
                                     std::span<const std::uint64_t>, std::uint64_t,             \
                                     const loss_options&, size_t, expert_layer_tape<S>&,        \
                                     layer_trace<S>&);                                         \
  template void expert_layer_backward<S>(                                                      \
    const basic_layer_params<S>&, const layer_config&, std::span<const basic_matrix<S>* const>, \
    const expert_layer_tape<S>&, const layer_trace<S>&, const std::vector<basic_matrix<S>>&,   \
    const loss_options&, basic_layer_params<S>&, std::span<basic_matrix<S>* const>);
EOE_EXPERT_LAYER_INSTANCE(float)
EOE_EXPERT_LAYER_INSTANCE(double)
#undef EOE_EXPERT_LAYER_INSTANCE

} // namespace eoe::experts
