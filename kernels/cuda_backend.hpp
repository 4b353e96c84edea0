#pragma once
// The CUDA backend: cuBLAS SGEMM and eoe's own kernels on one device and one stream.
// At this stage operands live on the host and are staged through device buffers per call;
// device-resident weights come with the GPU offload work.

#include "kernels/backend.hpp"

namespace eoe::kernels {

/// A CUDA backend on `device`, or the reason there is none (no device, driver error).
expected<std::unique_ptr<backend>> make_cuda_backend(int device);

} // namespace eoe::kernels
