#pragma once
// A model's parameters: embedding, expert layers, head. Every tensor has a stable name
// ("layer.1.expert.3.w2"), which checkpoints, optimisers and the actor mesh address it by.

#include "experts/ffn_expert.hpp"
#include "experts/model_config.hpp"

#include <string>
#include <utility>
#include <vector>

namespace eoe::experts {

/// The parameters of one layer beyond its experts.
struct layer_params {
  std::vector<ffn_expert> experts; ///< E experts (dense: 1)
  matrix router;                   ///< (D, E) router layers; else empty
  matrix affinity;                 ///< (E_prev, E) eoe layers with affinity; else empty
  matrix tau;                      ///< (1, E) eoe threshold layers; else empty
};

/// A whole model: the config it was built from and its weights.
struct model {
  model_config config;
  matrix embed_w; ///< (D_in, D); empty when input_dim == 0
  matrix embed_b; ///< (1, D); empty when input_dim == 0
  std::vector<layer_params> layers;
  matrix head_w; ///< (D, classes); empty when classes == 0
  matrix head_b; ///< (1, classes); empty when classes == 0
};

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
/// Works on const and mutable models.
template <class Model, class F>
void for_each_parameter(Model& m, F&& f) {
  const auto& c = m.config;
  if (c.input_dim > 0) {
    f(std::string{"embed.w"}, m.embed_w);
    f(std::string{"embed.b"}, m.embed_b);
  }
  for (size_t l = 0; l < m.layers.size(); ++l) {
    auto& lp = m.layers[l];
    const auto& lc = c.layers[l];
    const auto prefix = "layer." + std::to_string(l) + ".";
    for (size_t e = 0; e < lp.experts.size(); ++e) {
      auto& x = lp.experts[e];
      const auto ep = prefix + "expert." + std::to_string(e) + ".";
      if (lc.kind == layer_kind::eoe)
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
  }
  if (c.classes > 0) {
    f(std::string{"head.w"}, m.head_w);
    f(std::string{"head.b"}, m.head_b);
  }
}

/// A model of config c with every tensor allocated to its shape and filled with zeros.
model zero_model(const model_config& c);

/// A model of config c initialised from c.seed: weights N(0, 1/fan_in), biases 0,
/// affinities 1, thresholds from the config. Each tensor draws from its own stream keyed by
/// its name, so the same name gets the same values whatever else the model holds.
model init_model(const model_config& c);

} // namespace eoe::experts
