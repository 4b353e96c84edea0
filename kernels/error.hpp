#pragma once
// Errors of the kernels folder: values, never exceptions across a boundary.

#include <cstdint>
#include "kernels/expected.hpp"
#include <string>

namespace eoe::kernels {

enum class errc : std::uint8_t {
  unknown_backend,   ///< a backend name that is neither "cpu" nor "cuda"
  not_compiled,      ///< the backend exists but this build left it out (no nvcc)
  no_device,         ///< CUDA compiled in, but no usable GPU at run time
  device_failure,    ///< a CUDA or cuBLAS call failed
};

struct error {
  errc code;
  std::string message;
};

template <class T>
using expected = basic_expected<T, error>;

} // namespace eoe::kernels
