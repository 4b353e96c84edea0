#include "kernels/cuda_backend.hpp"

#include "kernels/cuda_kernels.cuh"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace eoe::kernels {

namespace {

#define EOE_CUDA_CHECK(call) check_cuda((call), #call, __FILE__, __LINE__)
#define EOE_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)

void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string{file} + ":" + std::to_string(line) + ": " + call
                             + ": " + cudaGetErrorString(err));
}

void check_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string{file} + ":" + std::to_string(line) + ": " + call
                             + ": cuBLAS status " + std::to_string(static_cast<int>(st)));
}

/// A device buffer that only grows.
class device_buffer {
public:
  ~device_buffer() {
    if (ptr_)
      cudaFree(ptr_);
  }
  float* reserve(size_t floats) {
    if (floats > capacity_) {
      if (ptr_)
        EOE_CUDA_CHECK(cudaFree(ptr_));
      ptr_ = nullptr;
      EOE_CUDA_CHECK(cudaMalloc(&ptr_, floats * sizeof(float)));
      capacity_ = floats;
    }
    return ptr_;
  }

private:
  float* ptr_ = nullptr;
  size_t capacity_ = 0;
};

class cuda_backend final : public backend {
public:
  explicit cuda_backend(int device) : device_(device) {
    EOE_CUDA_CHECK(cudaSetDevice(device_));
    EOE_CUDA_CHECK(cudaStreamCreate(&stream_));
    EOE_CUBLAS_CHECK(cublasCreate(&blas_));
    EOE_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
  }

  ~cuda_backend() override {
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  std::string_view name() const noexcept override {
    return "cuda";
  }

  void gemm(const matrix& a, const matrix& b, matrix& c, bool accumulate) override {
    if (a.cols() != b.rows())
      throw std::invalid_argument("cuda backend: gemm: a (m, k) . b (k, n) with a.cols != b.rows");
    const int m = static_cast<int>(a.rows()), k = static_cast<int>(a.cols()),
              n = static_cast<int>(b.cols());
    if (accumulate) {
      if (c.rows() != m || c.cols() != n)
        throw std::invalid_argument("cuda backend: gemm: accumulate into c of wrong shape");
    } else {
      c.resize(m, n);
    }
    if (m == 0 || n == 0)
      return;
    float* da = upload(buf_a_, a);
    float* db = upload(buf_b_, b);
    float* dc = accumulate ? upload(buf_c_, c) : buf_c_.reserve(c.size());
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    // Row-major C = A B is column-major C^T = B^T A^T: swap the operands.
    EOE_CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, db, n, da, k,
                                 &beta, dc, n));
    download(dc, c);
  }

  void add_bias(matrix& x, const matrix& bias) override {
    if (bias.size() == 0 || x.size() == 0)
      return;
    check_bias(x, bias);
    float* dx = upload(buf_a_, x);
    float* dbias = upload(buf_b_, bias);
    cuda::add_bias(dx, dbias, static_cast<int>(x.rows()), static_cast<int>(x.cols()), stream_);
    download(dx, x);
  }

  void bias_activation(matrix& x, const matrix& bias, activation act) override {
    if (x.size() == 0)
      return;
    if (bias.size() != 0)
      check_bias(x, bias);
    float* dx = upload(buf_a_, x);
    float* dbias = bias.size() ? upload(buf_b_, bias) : nullptr;
    cuda::bias_activation(dx, dbias, static_cast<int>(x.rows()), static_cast<int>(x.cols()), act,
                          stream_);
    download(dx, x);
  }

  void row_norms(const matrix& x, vector& out) override {
    out.resize(x.rows());
    if (x.rows() == 0)
      return;
    float* dx = upload(buf_a_, x);
    float* dout = buf_c_.reserve(x.rows());
    cuda::row_norms(dx, dout, static_cast<int>(x.rows()), static_cast<int>(x.cols()), stream_);
    EOE_CUDA_CHECK(cudaMemcpyAsync(out.data(), dout, x.rows() * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream_));
    EOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

private:
  static void check_bias(const matrix& x, const matrix& bias) {
    if (bias.rows() != 1 || bias.cols() != x.cols())
      throw std::invalid_argument("cuda backend: bias must be (1, n)");
  }

  float* upload(device_buffer& buf, const matrix& m) {
    float* d = buf.reserve(m.size());
    EOE_CUDA_CHECK(
      cudaMemcpyAsync(d, m.data(), m.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    return d;
  }

  void download(const float* d, matrix& m) {
    EOE_CUDA_CHECK(
      cudaMemcpyAsync(m.data(), d, m.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    EOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  device_buffer buf_a_, buf_b_, buf_c_;
};

} // namespace

expected<std::unique_ptr<backend>> make_cuda_backend(int device) {
  int count = 0;
  if (auto err = cudaGetDeviceCount(&count); err != cudaSuccess)
    return eoe::unexpected(error{errc::no_device, std::string{"backend 'cuda': no usable GPU ("}
                                                    + cudaGetErrorString(err) + ")"});
  if (device < 0 || device >= count)
    return eoe::unexpected(error{errc::no_device, "backend 'cuda': device " + std::to_string(device)
                                                    + " requested, " + std::to_string(count)
                                                    + " present"});
  try {
    return std::unique_ptr<backend>{std::make_unique<cuda_backend>(device)};
  } catch (const std::exception& e) {
    return eoe::unexpected(error{errc::device_failure, e.what()});
  }
}

} // namespace eoe::kernels
