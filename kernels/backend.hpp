#pragma once
// The math backend interface the expert code calls: GEMM, bias + activation, row norms.
// One implementation per device kind (Eigen on the CPU, cuBLAS and own kernels on CUDA);
// callers never know which one they hold.

#include "kernels/activation.hpp"
#include "kernels/error.hpp"
#include "kernels/tensor.hpp"

#include <memory>
#include <string_view>

namespace eoe::kernels {

/// A math backend. Not thread-safe: one backend per thread or actor.
class backend {
public:
  virtual ~backend() = default;

  /// "cpu" or "cuda".
  virtual std::string_view name() const noexcept = 0;

  /// c (m, n) = a (m, k) . b (k, n); with `accumulate`, c (m, n) += a . b.
  /// Without `accumulate` c is resized as needed.
  virtual void gemm(const matrix& a, const matrix& b, matrix& c, bool accumulate = false) = 0;

  /// x (m, n) = act(x + bias) where bias is (1, n), or empty for none.
  virtual void bias_activation(matrix& x, const matrix& bias, activation act) = 0;

  /// x (m, n) += bias (1, n) on every row; an empty bias is a no-op.
  virtual void add_bias(matrix& x, const matrix& bias) = 0;

  /// out (m) = L2 norm of every row of x (m, n).
  virtual void row_norms(const matrix& x, vector& out) = 0;
};

/// The Eigen backend; always available.
std::unique_ptr<backend> make_cpu_backend();

/// "cpu" or "cuda" (device index for cuda). Names the reason when the backend is unavailable.
expected<std::unique_ptr<backend>> make_backend(std::string_view name, int device = 0);

/// True when this build compiled the CUDA backend (nvcc was found).
bool cuda_compiled() noexcept;

} // namespace eoe::kernels
