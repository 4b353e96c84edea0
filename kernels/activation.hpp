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

// The one definition of each, for any scalar type (float for inference and training, double
// for the finite-difference checks), and its derivative for the backward pass.

template <class S>
S silu(S x) noexcept {
  return x / (S{1} + std::exp(-x));
}

template <class S>
S gelu(S x) noexcept {
  return S{0.5} * x * (S{1} + std::erf(x * S{0.70710678118654752440}));
}

template <class S>
S apply(activation a, S x) noexcept {
  return a == activation::silu ? silu(x) : gelu(x);
}

/// d apply(a, x) / dx.
template <class S>
S derivative(activation a, S x) noexcept {
  if (a == activation::silu) {
    const S sig = S{1} / (S{1} + std::exp(-x));
    return sig * (S{1} + x * (S{1} - sig));
  }
  const S cdf = S{0.5} * (S{1} + std::erf(x * S{0.70710678118654752440}));
  const S pdf = std::exp(S{-0.5} * x * x) * S{0.39894228040143267794};
  return cdf + x * pdf;
}

} // namespace eoe::kernels
