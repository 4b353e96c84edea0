#pragma once
// Raw-pointer launchers of eoe's own CUDA kernels. Each launcher checks its shapes and its
// launch; the CPU reference of each is the same-named method of the cpu backend.

#include "kernels/activation.hpp"

#include <cuda_runtime.h>

namespace eoe::kernels::cuda {

/// x (rows, cols) = act(x + bias); bias (cols) on the device, or nullptr for none.
void bias_activation(float* x, const float* bias, int rows, int cols, activation act,
                     cudaStream_t stream);

/// x (rows, cols) += bias (cols), row by row.
void add_bias(float* x, const float* bias, int rows, int cols, cudaStream_t stream);

/// out (rows) = L2 norm of each row of x (rows, cols).
void row_norms(const float* x, float* out, int rows, int cols, cudaStream_t stream);

} // namespace eoe::kernels::cuda
