#pragma once
// A model that looks trained: its init plus N(0, scale) noise on every weight (thresholds
// left as configured), so that every layer's decisions vary from token to token.

#include "experts/model/model.hpp"
#include "experts/base/rng.hpp"

#include <cstdint>
#include <string>

namespace eoe::test {

template <class S = float>
experts::basic_model<S> random_model(const experts::model_config& c, std::uint64_t seed,
                                     double scale = 0.1) {
  auto m = experts::model_cast<S>(experts::init_model(c));
  experts::rng r{seed};
  experts::for_each_parameter(m, [&](const std::string& name, basic_matrix<S>& t) {
    if (name.ends_with(".tau"))
      return;
    for (Eigen::Index i = 0; i < t.size(); ++i)
      t.data()[i] += static_cast<S>(scale * r.normal());
  });
  return m;
}

} // namespace eoe::test
