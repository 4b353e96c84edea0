// The Eigen backend against plain loops.

#include "kernels/backend.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

using namespace eoe;

namespace {

matrix filled(Eigen::Index r, Eigen::Index c, float scale) {
  matrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i)
    m.data()[i] = scale * std::sin(0.37f * static_cast<float>(i) + 0.1f);
  return m;
}

} // namespace

TEST_CASE("cpu gemm equals the triple loop, plain and accumulating", "[kernels]") {
  auto be = kernels::make_cpu_backend();
  auto a = filled(7, 5, 1.0f), b = filled(5, 3, 0.5f);
  matrix c;
  be->gemm(a, b, c);
  REQUIRE(c.rows() == 7);
  REQUIRE(c.cols() == 3);
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 5; ++k)
        s += double(a(i, k)) * b(k, j);
      CHECK(c(i, j) == Approx(s).margin(1e-6));
    }
  matrix c2 = c;
  be->gemm(a, b, c2, true);
  CHECK((c2 - 2 * c).cwiseAbs().maxCoeff() < 1e-6f);
}

TEST_CASE("cpu gemm rejects mismatched shapes", "[kernels]") {
  auto be = kernels::make_cpu_backend();
  matrix a(2, 3), b(4, 2), c;
  CHECK_THROWS_WITH(be->gemm(a, b, c), Catch::Contains("a.cols != b.rows"));
  matrix wrong(5, 5);
  matrix b2(3, 2);
  CHECK_THROWS_WITH(be->gemm(a, b2, wrong, true), Catch::Contains("wrong shape"));
}

TEST_CASE("cpu bias + activation equals the scalar definitions", "[kernels]") {
  auto be = kernels::make_cpu_backend();
  for (auto act : {kernels::activation::silu, kernels::activation::gelu}) {
    auto x = filled(4, 6, 3.0f);
    auto bias = filled(1, 6, 0.7f);
    matrix y = x;
    be->bias_activation(y, bias, act);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 6; ++j) {
        const double v = double(x(i, j)) + bias(0, j);
        const double want = act == kernels::activation::silu
                              ? v / (1 + std::exp(-v))
                              : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        CHECK(y(i, j) == Approx(want).margin(1e-6));
      }
  }
  // Every slope of both, where the vector forms could part from the scalar definitions: a
  // dense sweep of [-12, 12] (beyond +-4 erf is +-1 in float) against float64. The vector
  // erf is within a few ulp of 1 near -1, so gelu(x) there within ~1e-6 of its tiny value.
  for (auto act : {kernels::activation::silu, kernels::activation::gelu}) {
    matrix sweep(1, 24001);
    for (Eigen::Index j = 0; j < sweep.cols(); ++j)
      sweep(0, j) = float(-12.0 + 0.001 * double(j));
    matrix got = sweep;
    be->bias_activation(got, matrix{}, act);
    double worst = 0;
    for (Eigen::Index j = 0; j < sweep.cols(); ++j) {
      const double v = sweep(0, j);
      const double want = act == kernels::activation::silu ? v / (1 + std::exp(-v))
                                                           : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
      worst = std::max(worst, std::abs(double(got(0, j)) - want) / std::max(1.0, std::abs(want)));
    }
    INFO(kernels::to_string(act) << ": worst error " << worst);
    CHECK(worst < 2e-6);
  }
  // Known values: silu(1) = 0.7310586, gelu(1) = 0.8413447.
  CHECK(kernels::silu(1.0f) == Approx(0.7310586).epsilon(1e-6));
  CHECK(kernels::gelu(1.0f) == Approx(0.8413447).epsilon(1e-6));
}

TEST_CASE("cpu row norms and bias", "[kernels]") {
  auto be = kernels::make_cpu_backend();
  matrix x(2, 2);
  x << 3, 4, -5, 12;
  vector n;
  be->row_norms(x, n);
  CHECK(n(0) == 5.0f);
  CHECK(n(1) == 13.0f);
  matrix bias(1, 2);
  bias << 1, -1;
  be->add_bias(x, bias);
  CHECK(x(0, 0) == 4.0f);
  CHECK(x(1, 1) == 11.0f);
  matrix bad(1, 3);
  CHECK_THROWS_WITH(be->add_bias(x, bad), Catch::Contains("bias must be (1, n)"));
}

TEST_CASE("make_backend names what is wrong", "[kernels]") {
  auto cpu = kernels::make_backend("cpu");
  REQUIRE(cpu.has_value());
  CHECK((*cpu)->name() == "cpu");
  auto bad = kernels::make_backend("tpu");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == kernels::errc::unknown_backend);
  CHECK(bad.error().message == "backend 'tpu': expected \"cpu\" or \"cuda\"");
  if (!kernels::cuda_compiled()) {
    auto cuda = kernels::make_backend("cuda");
    REQUIRE_FALSE(cuda.has_value());
    CHECK(cuda.error().code == kernels::errc::not_compiled);
  }
}
