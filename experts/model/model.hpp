#pragma once
// A model's parameters: embedding, expert layers, head. Every tensor has a stable name
// ("layer.1.expert.3.w2"), which checkpoints, optimisers and the actor mesh address it by.

#include "experts/nn/attention_params.hpp"
#include "experts/nn/ffn_expert.hpp"
#include "experts/base/model_config.hpp"

#include <string>
#include <utility>
#include <vector>

namespace eoe::experts {

/// The parameters of one layer (of the config; a recurrent layer's steps share them).
template <class S>
struct basic_layer_params {
  std::vector<basic_ffn_expert<S>> experts; ///< E experts (dense: 1)
  basic_matrix<S> router;   ///< (D, E) router layers; else empty
  basic_matrix<S> affinity; ///< (E_prev, E) eoe layers with affinity; else empty
  /// (1, E) eoe threshold layers; else empty. Starts at the config's tau; training calibrates
  /// it, and the forward reads this tensor, not the config.
  basic_matrix<S> tau;
  /// (1, E) eoe topk layers; else empty. Added to the scores for the top-k choice only, never
  /// to the gates: training moves it to balance the experts' load without an auxiliary loss
  /// (DeepSeek-V3's auxiliary-loss-free balancing). Zero: plain top-k.
  basic_matrix<S> select_bias;
  /// (1, E) eoe layers; else empty. Added to an expert's score where gates are made (the
  /// softmax over the active experts' score + gate bias), never where it is decided. Learned,
  /// 0 at init. Splitting an expert into two clones that each take its gate bias - ln 2
  /// leaves every gate sum as it was: the function-preserving clone.
  basic_matrix<S> gate_bias;
  /// (1, D) language models: the RMSNorm gain of the layer's input (pre-norm); else empty.
  basic_matrix<S> norm;
  basic_attention_params<S> attention; ///< attention layers; else empty
};

/// A whole model: the config it was built from and its weights. S = float at run time; the
/// gradient checks instantiate double.
template <class S>
struct basic_model {
  model_config config;
  basic_matrix<S> embed_w; ///< (D_in, D), lm: (vocab, D) token embeddings; else empty
  basic_matrix<S> embed_b; ///< (1, D); empty when input_dim == 0 (and in a language model)
  std::vector<basic_layer_params<S>> layers;
  basic_matrix<S> final_norm; ///< (1, D) lm: RMSNorm gain before the head; else empty
  basic_matrix<S> head_w; ///< (D, classes), lm: (D, vocab); empty without a head
  basic_matrix<S> head_b; ///< (1, classes), lm: (1, vocab); empty without a head
};

using layer_params = basic_layer_params<float>;
using model = basic_model<float>;

/// A named tensor's expected shape.
struct tensor_shape {
  std::string name;
  Eigen::Index rows = 0;
  Eigen::Index cols = 0;
  bool operator==(const tensor_shape&) const = default;
};

/// Every tensor a model of this config holds, in canonical order. The config must be valid.
std::vector<tensor_shape> parameter_shapes(const model_config& c);

/// Calls f(name, tensor) for every parameter tensor of m, in the order of parameter_shapes.
/// Works on const and mutable models. A language model's names: embed.w, then per layer
/// layer.<l>.norm and either layer.<l>.{wq,wk,wv,wo} (attention) or the expert layer's tensors,
/// then head.norm, head.w, head.b.
template <class Model, class F>
void for_each_parameter(Model& m, F&& f) {
  const auto& c = m.config;
  if (c.is_lm())
    f(std::string{"embed.w"}, m.embed_w);
  if (c.input_dim > 0) {
    f(std::string{"embed.w"}, m.embed_w);
    f(std::string{"embed.b"}, m.embed_b);
  }
  for (size_t l = 0; l < m.layers.size(); ++l) {
    auto& lp = m.layers[l];
    const auto& lc = c.layers[l];
    const auto prefix = "layer." + std::to_string(l) + ".";
    if (c.is_lm())
      f(prefix + "norm", lp.norm);
    if (lc.kind == layer_kind::attention) {
      f(prefix + "wq", lp.attention.wq);
      f(prefix + "wk", lp.attention.wk);
      f(prefix + "wv", lp.attention.wv);
      f(prefix + "wo", lp.attention.wo);
      continue;
    }
    for (size_t e = 0; e < lp.experts.size(); ++e) {
      auto& x = lp.experts[e];
      const auto ep = prefix + "expert." + std::to_string(e) + ".";
      if (lc.kind == layer_kind::eoe && lc.rank > 0)
        f(ep + "a", x.a);
      f(ep + "w1", x.w1);
      if (lc.bias)
        f(ep + "b1", x.b1);
      f(ep + "w2", x.w2);
      if (lc.bias)
        f(ep + "b2", x.b2);
    }
    if (lc.kind == layer_kind::router)
      f(prefix + "router", lp.router);
    if (lc.affinity)
      f(prefix + "affinity", lp.affinity);
    if (lc.kind == layer_kind::eoe && lc.mode == activation_mode::threshold)
      f(prefix + "tau", lp.tau);
    if (lc.kind == layer_kind::eoe && lc.mode == activation_mode::topk)
      f(prefix + "select_bias", lp.select_bias);
    if (lc.kind == layer_kind::eoe)
      f(prefix + "gate_bias", lp.gate_bias);
  }
  if (c.is_lm())
    f(std::string{"head.norm"}, m.final_norm);
  if (c.classes > 0 || c.is_lm()) {
    f(std::string{"head.w"}, m.head_w);
    f(std::string{"head.b"}, m.head_b);
  }
}

/// A model of config c with every tensor allocated to its shape and filled with zeros.
template <class S = float>
basic_model<S> zero_model(const model_config& c) {
  basic_model<S> m;
  m.config = c;
  m.layers.resize(c.layers.size());
  for (size_t l = 0; l < c.layers.size(); ++l)
    m.layers[l].experts.resize(static_cast<size_t>(c.layers[l].experts));
  const auto shapes = parameter_shapes(c);
  size_t i = 0;
  for_each_parameter(m, [&](const std::string&, basic_matrix<S>& t) {
    t = basic_matrix<S>::Zero(shapes[i].rows, shapes[i].cols);
    ++i;
  });
  return m;
}

/// The same model in another scalar type.
template <class To, class From>
basic_model<To> model_cast(const basic_model<From>& m) {
  auto out = zero_model<To>(m.config);
  std::vector<const basic_matrix<From>*> src;
  for_each_parameter(m, [&](const std::string&, const basic_matrix<From>& t) { src.push_back(&t); });
  size_t i = 0;
  for_each_parameter(out, [&](const std::string&, basic_matrix<To>& t) {
    t = src[i++]->template cast<To>();
  });
  return out;
}

/// A model of config c initialised from c.seed: weights N(0, 1/fan_in), biases and selection
/// biases 0, affinities and RMSNorm gains 1, thresholds from the config; a language model's
/// token embeddings N(0, 1) (each row is what its token puts into a pre-normed stream). Each tensor draws from its own stream keyed by
/// its name, so the same name gets the same values whatever else the model holds.
model init_model(const model_config& c);

} // namespace eoe::experts
