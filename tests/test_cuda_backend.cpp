// The CUDA backend against the CPU backend (the reference), fp32 tolerance 1e-5 relative.
// Without a GPU this test exits 77, which CTest reports as skipped.

#define CATCH_CONFIG_RUNNER
#include "kernels/backend.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <iostream>

using namespace eoe;

namespace {

std::unique_ptr<kernels::backend> gpu;

matrix filled(Eigen::Index r, Eigen::Index c, float scale) {
  matrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i)
    m.data()[i] = scale * std::sin(0.37f * static_cast<float>(i) + 0.1f);
  return m;
}

float rel_diff(const matrix& a, const matrix& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-30f, b.cwiseAbs().maxCoeff());
}

} // namespace

TEST_CASE("cuda gemm, bias + activation and row norms equal the cpu backend", "[gpu]") {
  auto cpu = kernels::make_cpu_backend();
  auto a = filled(67, 130, 1.0f), b = filled(130, 45, 0.3f);
  matrix cg, cc;
  gpu->gemm(a, b, cg);
  cpu->gemm(a, b, cc);
  CHECK(rel_diff(cg, cc) <= 1e-5f);
  gpu->gemm(a, b, cg, true);
  cpu->gemm(a, b, cc, true);
  CHECK(rel_diff(cg, cc) <= 1e-5f);
  for (auto act : {kernels::activation::silu, kernels::activation::gelu}) {
    matrix xg = cc, xc = cc;
    auto bias = filled(1, 45, 0.2f);
    gpu->bias_activation(xg, bias, act);
    cpu->bias_activation(xc, bias, act);
    CHECK(rel_diff(xg, xc) <= 1e-5f);
  }
  vector ng, nc;
  gpu->row_norms(a, ng);
  cpu->row_norms(a, nc);
  CHECK((ng - nc).cwiseAbs().maxCoeff() / nc.maxCoeff() <= 1e-5f);
}

int main(int argc, char** argv) {
  auto be = kernels::make_backend("cuda");
  if (!be) {
    std::cout << "SKIPPED: " << be.error().message << "\n";
    return 77;
  }
  gpu = std::move(*be);
  return Catch::Session().run(argc, argv);
}
