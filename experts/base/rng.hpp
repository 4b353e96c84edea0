#pragma once
// A small, platform-stable random generator (splitmix64 + Box-Muller): the same seed gives
// the same weights with any compiler and standard library.

#include <cmath>
#include <cstdint>

namespace eoe::experts {

class rng {
public:
  explicit rng(std::uint64_t seed) noexcept : state_(seed) {
    // nop
  }

  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() noexcept {
    return static_cast<double>(next() >> 11) * 0x1.0p-53;
  }

  /// Standard normal.
  double normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u = 0.0;
    while (u <= 0.0)
      u = uniform();
    const double v = uniform();
    const double r = std::sqrt(-2.0 * std::log(u));
    spare_ = r * std::sin(2.0 * M_PI * v);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * v);
  }

private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

} // namespace eoe::experts
