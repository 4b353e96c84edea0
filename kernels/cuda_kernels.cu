#include "kernels/cuda_kernels.cuh"

#include <stdexcept>
#include <string>

namespace eoe::kernels::cuda {

namespace {

void check_launch(const char* kernel, const char* file, int line) {
  auto err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string{file} + ":" + std::to_string(line) + ": launch of "
                             + kernel + " failed: " + cudaGetErrorString(err));
}

void check_shape(bool ok, const char* what) {
  if (!ok)
    throw std::invalid_argument(std::string{"cuda kernels: "} + what);
}

__device__ float apply_act(activation act, float v) {
  if (act == activation::silu)
    return v / (1.0f + expf(-v));
  return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

__global__ void bias_activation_kernel(float* x, const float* bias, long long n, int cols,
                                       activation act) {
  for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
       i += (long long) gridDim.x * blockDim.x) {
    float v = x[i] + (bias ? bias[i % cols] : 0.0f);
    x[i] = apply_act(act, v);
  }
}

__global__ void add_bias_kernel(float* x, const float* bias, long long n, int cols) {
  for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
       i += (long long) gridDim.x * blockDim.x)
    x[i] += bias[i % cols];
}

// One warp per row: strided partial sums of squares, then a shuffle reduction.
__global__ void row_norms_kernel(const float* x, float* out, int rows, int cols) {
  int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x % 32;
  if (warp >= rows)
    return;
  const float* row = x + (long long) warp * cols;
  float acc = 0.0f;
  for (int c = lane; c < cols; c += 32)
    acc += row[c] * row[c];
  for (int off = 16; off > 0; off /= 2)
    acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0)
    out[warp] = sqrtf(acc);
}

int grid_for(long long n, int block) {
  long long g = (n + block - 1) / block;
  return (int) (g < 65535 ? (g > 0 ? g : 1) : 65535);
}

} // namespace

void bias_activation(float* x, const float* bias, int rows, int cols, activation act,
                     cudaStream_t stream) {
  check_shape(rows >= 0 && cols > 0, "bias_activation: rows >= 0 and cols > 0");
  long long n = (long long) rows * cols;
  if (n == 0)
    return;
  bias_activation_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, bias, n, cols, act);
  check_launch("bias_activation_kernel", __FILE__, __LINE__);
}

void add_bias(float* x, const float* bias, int rows, int cols, cudaStream_t stream) {
  check_shape(rows >= 0 && cols > 0 && bias != nullptr, "add_bias: rows >= 0, cols > 0, bias");
  long long n = (long long) rows * cols;
  if (n == 0)
    return;
  add_bias_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, bias, n, cols);
  check_launch("add_bias_kernel", __FILE__, __LINE__);
}

void row_norms(const float* x, float* out, int rows, int cols, cudaStream_t stream) {
  check_shape(rows >= 0 && cols > 0, "row_norms: rows >= 0 and cols > 0");
  if (rows == 0)
    return;
  constexpr int block = 256; // 8 rows per block
  int grid = (rows * 32 + block - 1) / block;
  row_norms_kernel<<<grid, block, 0, stream>>>(x, out, rows, cols);
  check_launch("row_norms_kernel", __FILE__, __LINE__);
}

} // namespace eoe::kernels::cuda
