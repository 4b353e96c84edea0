#include "experts/train/backprop.hpp"

#include "experts/base/blocks.hpp"
#include "experts/model/forward.hpp"
#include "experts/nn/attention.hpp"
#include "experts/nn/rms_norm.hpp"
#include "experts/nn/weighted_output.hpp"
#include "experts/train/cross_entropy.hpp"

#include <numeric>
#include <stdexcept>
#include <string>

namespace eoe::experts {

namespace {

template <class S>
using mat = basic_matrix<S>;

// Every model is one network: a stem (a dense embedding of features, the features themselves,
// or token embeddings), blocks that each add their branch's output to a residual stream, and
// a head (RMSNorm in a language model, then linear) under the cross-entropy. A block's branch
// is an expert layer or (language model) attention; in a language model it reads the stream
// through its own RMSNorm, in an EoE classifier the stream itself, or with affinity each
// expert its own mix of the previous block's outputs.

/// What the network reads: features (B, input_dim or dim), or token ids (N).
template <class S>
struct network_input {
  const mat<S>* features = nullptr;
  std::span<const std::uint8_t> tokens;
  Eigen::Index seq_len = 1;               ///< positions of a sequence (attention)
  std::span<const std::uint64_t> hash_ids; ///< what hash layers hash, one per row
};

/// One block as run.
template <class S>
struct block_tape {
  size_t cl = 0;              ///< config layer
  mat<S> h;                   ///< (N, D) the stream the block read
  mat<S> normed;              ///< language model: rmsnorm(h) * norm, the branch's input
  std::vector<S> inv_rms;
  std::vector<mat<S>> mixed;  ///< affinity: each expert's own input
  attention_tape<S> attention;
  expert_layer_tape<S> experts;
  size_t trace = 0;           ///< expert layers: index into the result's traces

  /// What the expert layer's experts read.
  std::vector<const mat<S>*> inputs() const {
    std::vector<const mat<S>*> in;
    if (!mixed.empty()) {
      for (auto& m : mixed)
        in.push_back(&m);
    } else {
      in.push_back(normed.size() ? &normed : &h);
    }
    return in;
  }
};


/// Forward, loss and backward of the network (see above); targets: one per row.
template <class S>
step_result<S> network_loss_and_gradient(const basic_model<S>& m, const network_input<S>& in,
                                         std::span<const std::uint8_t> targets,
                                         const loss_options& opt, basic_model<S>* grad) {
  const auto& c = m.config;
  const bool lm = c.is_lm(); // pre-normed blocks, token stem, final norm

  // ---- stem
  mat<S> h;
  if (!in.features) {
    h.resize(static_cast<Eigen::Index>(in.tokens.size()), c.dim);
    for (Eigen::Index r = 0; r < h.rows(); ++r)
      h.row(r) = m.embed_w.row(in.tokens[r]);
  } else if (c.input_dim > 0) {
    h.noalias() = *in.features * m.embed_w;
    add_row_bias(h, m.embed_b);
  } else {
    h = *in.features;
  }
  const auto n = h.rows();

  // ---- blocks, with their tapes
  step_result<S> res;
  std::vector<block_tape<S>> tapes;
  tapes.reserve(c.unrolled_layers());
  mat<S> y;
  for (const auto& b : blocks_of(c)) {
    const auto cl = static_cast<size_t>(b.layer);
    const auto& lc = c.layers[cl];
    const auto& lp = m.layers[cl];
    block_tape<S> tape;
    tape.cl = cl;
    tape.h = h;
    if (lm)
      rms_norm_forward(h, lp.norm, tape.normed, tape.inv_rms);
    if (b.attention) {
      attention_forward<S>(lp.attention, lc, tape.normed, in.seq_len, y, &tape.attention);
      h += y;
    } else {
      if (lc.affinity && !lm && !tapes.empty()) {
        // Each expert mixes its own input: the stream before the previous block's outputs
        // plus those outputs weighted by its column of the affinity matrix.
        const auto& prev = tapes.back();
        tape.mixed.resize(static_cast<size_t>(lc.experts));
        for (int e = 0; e < lc.experts; ++e) {
          tape.mixed[e] = prev.h;
          scatter_add(tape.mixed[e], prev.experts.out, lp.affinity.data() + e,
                      lp.affinity.cols());
        }
      }
      layer_trace<S> trace;
      trace.config_layer = cl;
      res.auxiliary += expert_layer_forward<S>(lp, lc, tape.inputs(), in.hash_ids,
                                               hash_seed(c, b.unrolled), opt, b.unrolled,
                                               tape.experts, trace);
      scatter_add(h, tape.experts.out);
      tape.trace = b.unrolled;
      res.layers.push_back(std::move(trace));
    }
    tapes.push_back(std::move(tape));
  }

  // ---- head and loss
  mat<S> final_normed;
  std::vector<S> final_inv;
  if (lm)
    rms_norm_forward(h, m.final_norm, final_normed, final_inv);
  const mat<S>& head_in = lm ? final_normed : h;
  res.logits.noalias() = head_in * m.head_w;
  add_row_bias(res.logits, m.head_b);
  mat<S> dlogits;
  const auto ce = smoothed_cross_entropy(res.logits, targets, opt.label_smoothing, dlogits);
  res.correct = ce.correct;
  res.predicted = static_cast<long>(n);
  res.cross_entropy = ce.mean;
  res.loss = res.cross_entropy + res.auxiliary;
  if (!grad)
    return res;

  // ---- backward
  auto& g = *grad;
  if (g.config == c)
    for_each_parameter(g, [](const std::string&, mat<S>& t) { t.setZero(); });
  else
    g = zero_model<S>(c);
  mat<S> dh = linear_head_backward(head_in, m.head_w, dlogits, g.head_w, g.head_b);
  if (lm) {
    const mat<S> d_final = std::move(dh);
    rms_norm_backward(h, m.final_norm, final_inv, d_final, dh, g.final_norm);
  }
  // dh: d loss / d the stream after the block being walked back. pending: d loss / d that
  // block's outputs where the block after it mixed them by affinity (else gathered from dh).
  std::vector<mat<S>> pending;
  mat<S> d_normed, dx;
  for (size_t li = tapes.size(); li-- > 0;) {
    auto& tape = tapes[li];
    const auto& lc = c.layers[tape.cl];
    const auto& lp = m.layers[tape.cl];
    auto& gp = g.layers[tape.cl];
    if (lc.kind == layer_kind::attention) {
      attention_backward<S>(lp.attention, lc, tape.attention, in.seq_len, dh, gp.attention,
                            d_normed);
    } else {
      const auto dout = pending.empty() ? gather_grads(dh, tape.experts.out) : std::move(pending);
      pending.clear();
      std::vector<mat<S>> d_inputs(std::max<size_t>(1, tape.mixed.size()), mat<S>::Zero(n, c.dim));
      std::vector<mat<S>*> d_in;
      for (auto& d : d_inputs)
        d_in.push_back(&d);
      expert_layer_backward<S>(lp, lc, tape.inputs(), tape.experts, res.layers[tape.trace], dout,
                               opt, gp, d_in);
      if (tape.mixed.empty())
        d_normed = std::move(d_inputs[0]);
      else
        d_normed = mat<S>::Zero(n, c.dim); // nothing reads the stream itself
      if (!tape.mixed.empty()) {
        // The stream after the previous block: dh as it is; the previous block's outputs i
        // and the stream before them get what each expert j's mix sent back.
        dh += d_normed;
        const auto& prev = tapes[li - 1].experts.out;
        pending = gather_grads(dh, prev);
        for (size_t j = 0; j < d_inputs.size(); ++j) {
          dh += d_inputs[j];
          for (size_t i = 0; i < prev.size(); ++i) {
            const S a = lp.affinity(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
            S da = 0;
            for (size_t r = 0; r < prev[i].rows.size(); ++r) {
              const auto row = static_cast<Eigen::Index>(r);
              da += d_inputs[j].row(prev[i].rows[r]).dot(prev[i].values.row(row));
              pending[i].row(row) += a * d_inputs[j].row(prev[i].rows[r]);
            }
            gp.affinity(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) += da;
          }
        }
        continue;
      }
    }
    if (lm) {
      rms_norm_backward(tape.h, lp.norm, tape.inv_rms, d_normed, dx, gp.norm);
      dh += dx;
    } else {
      dh += d_normed;
    }
  }

  // ---- stem
  if (!in.features) {
    for (Eigen::Index r = 0; r < n; ++r)
      g.embed_w.row(in.tokens[r]) += dh.row(r);
  } else if (c.input_dim > 0) {
    g.embed_w.noalias() = in.features->transpose() * dh;
    g.embed_b = dh.colwise().sum();
  }
  return res;
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
                                + "' is a language model (lm_loss_and_gradient trains it)");
  if (c.classes <= 0)
    throw std::invalid_argument("loss_and_gradient: the model has no head (classes = 0)");
  if (static_cast<Eigen::Index>(labels.size()) != batch)
    throw std::invalid_argument("loss_and_gradient: one label per example");
  if (x.cols() != (c.input_dim > 0 ? c.input_dim : c.dim))
    throw std::invalid_argument("loss_and_gradient: input width differs from the model's");
  if (!c.layers.empty() && c.layers.front().affinity)
    throw std::invalid_argument("loss_and_gradient: affinity on the first layer");
  std::vector<std::uint64_t> row_ids;
  if (token_ids.empty()) {
    row_ids.resize(static_cast<size_t>(batch));
    std::iota(row_ids.begin(), row_ids.end(), 0);
    token_ids = row_ids;
  }
  network_input<S> in;
  in.features = &x;
  in.hash_ids = token_ids;
  return network_loss_and_gradient(m, in, labels, opt, grad);
}

template <class S>
step_result<S> lm_loss_and_gradient(const basic_model<S>& m, std::span<const std::uint8_t> windows,
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
  for (auto v : windows)
    if (v >= c.vocab)
      throw std::invalid_argument("lm_loss_and_gradient: token " + std::to_string(v)
                                  + " is not below vocab = " + std::to_string(c.vocab));
  // A window's first seq_len tokens are the input, its last seq_len the targets.
  const auto sequences = w / (seq_len + 1);
  std::vector<std::uint8_t> input(static_cast<size_t>(sequences * seq_len)), target(input.size());
  for (Eigen::Index b = 0; b < sequences; ++b)
    for (Eigen::Index t = 0; t < seq_len; ++t) {
      input[b * seq_len + t] = windows[b * (seq_len + 1) + t];
      target[b * seq_len + t] = windows[b * (seq_len + 1) + t + 1];
    }
  const std::vector<std::uint64_t> ids(input.begin(), input.end()); // hash layers hash tokens
  network_input<S> in;
  in.tokens = input;
  in.seq_len = seq_len;
  in.hash_ids = ids;
  return network_loss_and_gradient(m, in, target, opt, grad);
}

#define EOE_BACKPROP_INSTANCES(S)                                                               \
  template step_result<S> loss_and_gradient<S>(const basic_model<S>&, const basic_matrix<S>&,   \
                                               std::span<const std::uint8_t>,                   \
                                               const loss_options&, basic_model<S>*,            \
                                               std::span<const std::uint64_t>);                 \
  template step_result<S> lm_loss_and_gradient<S>(const basic_model<S>&,                        \
                                                  std::span<const std::uint8_t>, Eigen::Index,  \
                                                  const loss_options&, basic_model<S>*);
EOE_BACKPROP_INSTANCES(float)
EOE_BACKPROP_INSTANCES(double)
#undef EOE_BACKPROP_INSTANCES

} // namespace eoe::experts
