#pragma once
// A model that looks trained: its init plus N(0, scale) noise on every weight (thresholds
// left as configured), so that every layer's decisions vary from token to token; and the
// random inputs, labels and tokens the tests feed it.

#include "experts/model/model.hpp"
#include "experts/base/rng.hpp"

#include <cstdint>
#include <string>
#include <vector>

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

/// rows x cols entries drawn from N(0, scale) (rng seed), in S.
template <class S = float>
basic_matrix<S> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed,
                              double scale = 1) {
  experts::rng r{seed};
  basic_matrix<S> x(rows, cols);
  for (Eigen::Index i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<S>(scale * r.normal());
  return x;
}

/// n values in [0, below) (rng seed): class labels, or tokens of a vocabulary of `below`.
inline std::vector<std::uint8_t> random_bytes(size_t n, int below, std::uint64_t seed) {
  experts::rng r{seed};
  std::vector<std::uint8_t> out(n);
  for (auto& v : out)
    v = static_cast<std::uint8_t>(r.next() % static_cast<std::uint64_t>(below));
  return out;
}

} // namespace eoe::test
