#include "experts/lm_backprop.hpp"

#include "experts/attention.hpp"
#include "experts/forward.hpp"
#include "experts/rms_norm.hpp"
#include "experts/weighted_output.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace eoe::experts {

namespace {

template <class S>
using mat = basic_matrix<S>;

/// One layer as run: its branch's input and what the branch kept.
template <class S>
struct lm_layer_tape {
  size_t cl = 0;      ///< config layer
  mat<S> h;           ///< (N, D) the stream the branch read
  mat<S> normed;      ///< (N, D) rmsnorm(h) * norm: the branch's input
  std::vector<S> inv_rms;
  attention_tape<S> attention;
  expert_layer_tape<S> experts;
  size_t trace = 0;   ///< expert layers: index into the result's traces
};

} // namespace

template <class S>
lm_step_result<S> lm_loss_and_gradient(const basic_model<S>& m,
                                       std::span<const std::uint8_t> windows,
                                       Eigen::Index seq_len, const loss_options& opt,
                                       basic_model<S>* grad) {
  const auto& c = m.config;
  if (!c.is_lm())
    throw std::invalid_argument("lm_loss_and_gradient: '" + c.name + "' is not a language model");
  const auto w = static_cast<Eigen::Index>(windows.size());
  if (seq_len < 1 || seq_len > c.context || w % (seq_len + 1) != 0 || w == 0)
    throw std::invalid_argument("lm_loss_and_gradient: " + std::to_string(w)
                                + " tokens are not whole windows of seq_len + 1 = "
                                + std::to_string(seq_len + 1) + " (seq_len <= context "
                                + std::to_string(c.context) + ")");
  const auto sequences = w / (seq_len + 1);
  const auto n = sequences * seq_len;
  std::vector<std::uint8_t> input(static_cast<size_t>(n)), target(static_cast<size_t>(n));
  for (Eigen::Index b = 0; b < sequences; ++b)
    for (Eigen::Index t = 0; t < seq_len; ++t) {
      input[b * seq_len + t] = windows[b * (seq_len + 1) + t];
      target[b * seq_len + t] = windows[b * (seq_len + 1) + t + 1];
    }
  for (auto v : windows)
    if (v >= c.vocab)
      throw std::invalid_argument("lm_loss_and_gradient: token " + std::to_string(v)
                                  + " is not below vocab = " + std::to_string(c.vocab));
  const std::vector<std::uint64_t> ids(input.begin(), input.end());

  // ---- forward with tape
  mat<S> h(n, c.dim);
  for (Eigen::Index r = 0; r < n; ++r)
    h.row(r) = m.embed_w.row(input[r]);
  lm_step_result<S> res;
  std::vector<lm_layer_tape<S>> tapes;
  mat<S> y;
  for (size_t cl = 0; cl < c.layers.size(); ++cl) {
    const auto& lc = c.layers[cl];
    const auto& lp = m.layers[cl];
    for (int step = 0; step < lc.steps; ++step) {
      lm_layer_tape<S> tape;
      tape.cl = cl;
      tape.h = h;
      rms_norm_forward(h, lp.norm, tape.normed, tape.inv_rms);
      if (lc.kind == layer_kind::attention) {
        attention_forward<S>(lp.attention, lc, tape.normed, seq_len, y, &tape.attention);
        h += y;
      } else {
        const mat<S>* in[] = {&tape.normed};
        layer_trace<S> trace;
        trace.config_layer = cl;
        const auto unrolled = res.layers.size();
        res.auxiliary += expert_layer_forward<S>(lp, lc, in, ids, hash_seed(c, unrolled), opt,
                                                 unrolled, tape.experts, trace);
        scatter_add(h, tape.experts.out);
        tape.trace = unrolled;
        res.layers.push_back(std::move(trace));
      }
      tapes.push_back(std::move(tape));
    }
  }
  mat<S> final_normed;
  std::vector<S> final_inv;
  rms_norm_forward(h, m.final_norm, final_normed, final_inv);
  res.logits.noalias() = final_normed * m.head_w;
  res.logits.rowwise() += m.head_b.row(0);

  // ---- loss: mean next-token cross-entropy (label smoothing as the classifier's)
  const auto vocab = res.logits.cols();
  const S eps = static_cast<S>(opt.label_smoothing);
  mat<S> dlogits(n, vocab);
  S ce = 0;
  for (Eigen::Index t = 0; t < n; ++t) {
    const S mx = res.logits.row(t).maxCoeff();
    S sum = 0;
    for (Eigen::Index k = 0; k < vocab; ++k)
      sum += std::exp(res.logits(t, k) - mx);
    const S lse = mx + std::log(sum);
    Eigen::Index best = 0;
    res.logits.row(t).maxCoeff(&best);
    res.correct += best == target[t];
    for (Eigen::Index k = 0; k < vocab; ++k) {
      const S goal = (k == target[t] ? S{1} - eps : S{0}) + eps / static_cast<S>(vocab);
      ce -= goal * (res.logits(t, k) - lse);
      dlogits(t, k) = (std::exp(res.logits(t, k) - lse) - goal) / static_cast<S>(n);
    }
  }
  res.predicted = static_cast<long>(n);
  res.cross_entropy = ce / static_cast<S>(n);
  res.loss = res.cross_entropy + res.auxiliary;
  if (!grad)
    return res;

  // ---- backward
  auto& g = *grad;
  if (g.config == c)
    for_each_parameter(g, [](const std::string&, mat<S>& t) { t.setZero(); });
  else
    g = zero_model<S>(c);
  g.head_w.noalias() = final_normed.transpose() * dlogits;
  g.head_b = dlogits.colwise().sum();
  const mat<S> d_final = dlogits * m.head_w.transpose();
  mat<S> dh; // d loss / d h after the layer being walked back
  rms_norm_backward(h, m.final_norm, final_inv, d_final, dh, g.final_norm);
  mat<S> d_normed, dx;
  for (size_t li = tapes.size(); li-- > 0;) {
    auto& tape = tapes[li];
    const auto& lc = c.layers[tape.cl];
    const auto& lp = m.layers[tape.cl];
    auto& gp = g.layers[tape.cl];
    // h_out = h + branch(normed): the branch's output gradient is dh itself.
    if (lc.kind == layer_kind::attention) {
      attention_backward<S>(lp.attention, lc, tape.attention, seq_len, dh, gp.attention, d_normed);
    } else {
      const auto& out = tape.experts.out;
      auto dout = zero_grads_like(out);
      for (size_t e = 0; e < out.size(); ++e)
        for (size_t r = 0; r < out[e].rows.size(); ++r)
          dout[e].row(static_cast<Eigen::Index>(r)) = dh.row(out[e].rows[r]);
      d_normed = mat<S>::Zero(n, c.dim);
      const mat<S>* in[] = {&tape.normed};
      mat<S>* d_in[] = {&d_normed};
      expert_layer_backward<S>(lp, lc, in, tape.experts, res.layers[tape.trace], dout, opt, gp,
                               d_in);
    }
    rms_norm_backward(tape.h, lp.norm, tape.inv_rms, d_normed, dx, gp.norm);
    dh += dx;
  }
  for (Eigen::Index r = 0; r < n; ++r)
    g.embed_w.row(input[r]) += dh.row(r);
  return res;
}

template lm_step_result<float>
lm_loss_and_gradient<float>(const basic_model<float>&, std::span<const std::uint8_t>, Eigen::Index,
                            const loss_options&, basic_model<float>*);
template lm_step_result<double>
lm_loss_and_gradient<double>(const basic_model<double>&, std::span<const std::uint8_t>,
                             Eigen::Index, const loss_options&, basic_model<double>*);

} // namespace eoe::experts
