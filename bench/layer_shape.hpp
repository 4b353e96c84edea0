#pragma once
// The EoE layers a benchmark runs, their shape set from its command line, and the random
// tokens it feeds them.

#include "experts/base/model_config.hpp"
#include "experts/base/rng.hpp"
#include "kernels/tensor.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace eoe::bench {

struct layer_shape {
  int tokens = 256, dim = 1024, hidden = 4096, experts = 8, k = 2, rank = 256;

  void add_options(CLI::App& app) {
    app.add_option("--tokens", tokens);
    app.add_option("--dim", dim);
    app.add_option("--hidden", hidden);
    app.add_option("--experts", experts);
    app.add_option("--k", k);
    app.add_option("--rank", rank);
  }

  /// A model `name` of `layers` top-k EoE layers of this shape (init seed 1).
  experts::model_config model(const std::string& name, int layers) const {
    experts::model_config c;
    c.name = name;
    c.dim = dim;
    c.seed = 1;
    experts::layer_config l;
    l.kind = experts::layer_kind::eoe;
    l.experts = experts;
    l.hidden = hidden;
    l.rank = rank;
    l.k = k;
    c.layers.assign(static_cast<size_t>(layers), l);
    return c;
  }

  /// tokens x dim inputs drawn from N(0, 1) (rng seed 42).
  matrix input() const {
    experts::rng r{42};
    matrix x(tokens, dim);
    for (Eigen::Index i = 0; i < x.size(); ++i)
      x.data()[i] = static_cast<float>(r.normal());
    return x;
  }
};

} // namespace eoe::bench
