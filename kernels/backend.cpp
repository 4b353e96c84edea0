#include "kernels/backend.hpp"

#ifdef EOE_HAVE_CUDA
#include "kernels/cuda_backend.hpp"
#endif

#include <string>

namespace eoe::kernels {

bool cuda_compiled() noexcept {
#ifdef EOE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

expected<std::unique_ptr<backend>> make_backend(std::string_view name, int device) {
  if (name == "cpu")
    return make_cpu_backend();
  if (name == "cuda") {
#ifdef EOE_HAVE_CUDA
    return make_cuda_backend(device);
#else
    (void) device;
    return eoe::unexpected(error{errc::not_compiled,
                                 "backend 'cuda': this build has no CUDA backend (nvcc was not "
                                 "found at configure time; install CUDA and rebuild)"});
#endif
  }
  return eoe::unexpected(error{errc::unknown_backend, "backend '" + std::string{name}
                                                        + "': expected \"cpu\" or \"cuda\""});
}

} // namespace eoe::kernels
