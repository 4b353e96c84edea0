#pragma once
// Pointwise nonlinearities of the expert FFNs. Plain scalar definitions shared by the CPU
// backend, the CUDA kernels (as references) and the tests.

#include <cmath>
#include <optional>
#include <string_view>

namespace eoe::kernels {

/// The nonlinearity between the two projections of an FFN.
enum class activation : unsigned char {
  silu, ///< x * sigmoid(x)
  gelu, ///< exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as PyTorch's default
};

constexpr std::string_view to_string(activation a) noexcept {
  return a == activation::silu ? "silu" : "gelu";
}

constexpr std::optional<activation> parse_activation(std::string_view s) noexcept {
  if (s == "silu")
    return activation::silu;
  if (s == "gelu")
    return activation::gelu;
  return std::nullopt;
}

inline float silu(float x) noexcept {
  return x / (1.0f + std::exp(-x));
}

inline float gelu(float x) noexcept {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}

inline float apply(activation a, float x) noexcept {
  return a == activation::silu ? silu(x) : gelu(x);
}

} // namespace eoe::kernels
