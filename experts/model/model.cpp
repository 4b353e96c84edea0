#include "experts/model/model.hpp"

#include "experts/nn/hash_routing.hpp"
#include "experts/base/rng.hpp"

#include <cmath>
#include <stdexcept>

namespace eoe::experts {

std::vector<tensor_shape> parameter_shapes(const model_config& c) {
  std::vector<tensor_shape> out;
  const Eigen::Index d = c.dim;
  if (c.is_lm())
    out.push_back({"embed.w", c.vocab, d});
  if (c.input_dim > 0) {
    out.push_back({"embed.w", c.input_dim, d});
    out.push_back({"embed.b", 1, d});
  }
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto& lc = c.layers[l];
    const auto prefix = "layer." + std::to_string(l) + ".";
    if (c.is_lm())
      out.push_back({prefix + "norm", 1, d});
    if (lc.kind == layer_kind::attention) {
      for (auto w : {"wq", "wk", "wv", "wo"})
        out.push_back({prefix + w, d, d});
      continue;
    }
    const Eigen::Index h = lc.hidden;
    for (int e = 0; e < lc.experts; ++e) {
      const auto ep = prefix + "expert." + std::to_string(e) + ".";
      if (lc.kind == layer_kind::eoe && lc.rank > 0) {
        out.push_back({ep + "a", d, lc.rank});
        out.push_back({ep + "w1", lc.rank, h});
      } else {
        out.push_back({ep + "w1", d, h});
      }
      if (lc.bias)
        out.push_back({ep + "b1", 1, h});
      out.push_back({ep + "w2", h, d});
      if (lc.bias)
        out.push_back({ep + "b2", 1, d});
    }
    if (lc.kind == layer_kind::router)
      out.push_back({prefix + "router", d, lc.experts});
    if (lc.affinity)
      out.push_back({prefix + "affinity", c.experts_before(l), lc.experts});
    if (lc.kind == layer_kind::eoe && lc.mode == activation_mode::threshold)
      out.push_back({prefix + "tau", 1, lc.experts});
    if (lc.kind == layer_kind::eoe && lc.mode == activation_mode::topk)
      out.push_back({prefix + "select_bias", 1, lc.experts});
    if (lc.kind == layer_kind::eoe)
      out.push_back({prefix + "gate_bias", 1, lc.experts});
  }
  if (c.is_lm()) {
    out.push_back({"head.norm", 1, d});
    out.push_back({"head.w", d, c.vocab});
    out.push_back({"head.b", 1, c.vocab});
  }
  if (c.classes > 0) {
    out.push_back({"head.w", d, c.classes});
    out.push_back({"head.b", 1, c.classes});
  }
  return out;
}

namespace {

std::uint64_t name_key(const std::string& name) noexcept {
  std::uint64_t h = 1469598103934665603ull; // FNV-1a
  for (unsigned char ch : name)
    h = (h ^ ch) * 1099511628211ull;
  return h;
}

} // namespace

model init_model(const model_config& c) {
  model m = zero_model(c);
  for_each_parameter(m, [&](const std::string& name, matrix& t) {
    if (name.ends_with(".b") || name.ends_with(".b1") || name.ends_with(".b2")
        || name.ends_with(".select_bias") || name.ends_with(".gate_bias"))
      return; // biases start at zero
    if (name.ends_with(".affinity") || name.ends_with(".norm")) {
      t.setOnes(); // the plain residual mix; RMSNorm as a pure normalisation
      return;
    }
    if (name.ends_with(".tau")) {
      const auto l = std::stoul(name.substr(6)); // "layer.<l>.tau"
      for (Eigen::Index e = 0; e < t.cols(); ++e)
        t(0, e) = c.layers[l].tau[e];
      return;
    }
    rng r{stable_hash(name_key(name), c.seed)};
    const bool token_embedding = c.is_lm() && name == "embed.w";
    const double stddev =
      token_embedding ? 1.0 : 1.0 / std::sqrt(static_cast<double>(t.rows())); // rows = fan_in
    for (Eigen::Index i = 0; i < t.size(); ++i)
      t.data()[i] = static_cast<float>(r.normal() * stddev);
  });
  return m;
}

} // namespace eoe::experts
