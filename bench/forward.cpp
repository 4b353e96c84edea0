// bench/forward: the reference EoE forward's achieved GFLOP/s against Eigen's plain dense GEMM
// on exactly the GEMM shapes that forward performs, measured in the same run.
//
//   build/bin/bench_forward [--tokens 256] [--dim 1024] [--hidden 4096] [--experts 8] [--k 2]
//                           [--rank 256] [--reps 20]
//
// Useful FLOPs: scoring T*E*2*D*r, plus 2*(r*H + H*D) per active (token, expert). The baseline
// runs the same list of (m, k, n) products on preallocated Eigen matrices, nothing else: no
// gather, activation, gating or scatter. The ratio says how much of the GEMM speed the whole
// forward keeps.

#include "bench/layer_shape.hpp"
#include "bench/machine.hpp"
#include "bench/timing.hpp"
#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

using namespace eoe;
using namespace eoe::experts;
using eoe::bench::median_seconds;

namespace {

struct gemm_shape {
  Eigen::Index m, k, n;
};

} // namespace

int main(int argc, char** argv) {
  bench::layer_shape shape;
  int reps = 20;
  CLI::App app{"EoE reference forward GFLOP/s vs Eigen dense GEMM on the same shapes"};
  shape.add_options(app);
  app.add_option("--reps", reps);
  CLI11_PARSE(app, argc, argv);
  const auto [tokens, dim, hidden, experts, k, rank] = shape;

  const auto m = init_model(shape.model("bench", 1));
  const matrix x = shape.input();

  auto be = kernels::make_cpu_backend();
  auto first = forward(*be, m, x);
  if (!first) {
    std::fprintf(stderr, "bench_forward: %s\n", first.error().message.c_str());
    return 1;
  }

  // The GEMMs the forward performs, from its own activation record.
  std::vector<gemm_shape> shapes;
  double flops = 0;
  std::vector<std::int32_t> rows;
  std::vector<float> gates;
  for (int e = 0; e < experts; ++e)
    shapes.push_back({tokens, dim, rank});
  for (int e = 0; e < experts; ++e) {
    first->layers[0].active.tokens_of(e, rows, gates);
    if (rows.empty())
      continue;
    const auto n = static_cast<Eigen::Index>(rows.size());
    shapes.push_back({n, rank, hidden});
    shapes.push_back({n, hidden, dim});
  }
  for (auto& s : shapes)
    flops += 2.0 * s.m * s.k * s.n;

  const double t_forward = median_seconds(reps, [&] { (void) forward(*be, m, x); });

  std::vector<matrix> as, bs, cs;
  for (auto& s : shapes) {
    as.push_back(matrix::Random(s.m, s.k));
    bs.push_back(matrix::Random(s.k, s.n));
    cs.push_back(matrix(s.m, s.n));
  }
  const double t_gemm = median_seconds(reps, [&] {
    for (size_t i = 0; i < shapes.size(); ++i)
      cs[i].noalias() = as[i] * bs[i];
  });

  // For scale: one dense GEMM of the full batch through one expert-sized projection.
  matrix da = matrix::Random(tokens, dim), db = matrix::Random(dim, hidden), dc(tokens, hidden);
  const double t_dense = median_seconds(reps, [&] { dc.noalias() = da * db; });
  const double dense_flops = 2.0 * tokens * dim * hidden;

  const double gf_forward = flops / t_forward / 1e9, gf_gemm = flops / t_gemm / 1e9;
  std::printf("machine: %s\n", bench::machine_line().c_str());
  std::printf("shape: tokens=%d D=%d H=%d experts=%d top-%d rank=%d (%zu GEMMs, %.3f GFLOP useful)\n",
              tokens, dim, hidden, experts, k, rank, shapes.size(), flops / 1e9);
  std::printf("%-44s %10.2f ms %10.1f GFLOP/s\n", "eoe reference forward (cpu backend)",
              t_forward * 1e3, gf_forward);
  std::printf("%-44s %10.2f ms %10.1f GFLOP/s\n", "baseline: Eigen GEMMs of the same shapes",
              t_gemm * 1e3, gf_gemm);
  std::printf("%-44s %10.2f ms %10.1f GFLOP/s\n", "(context) Eigen dense GEMM T x D x H",
              t_dense * 1e3, dense_flops / t_dense / 1e9);
  std::printf("ratio forward / baseline: %.3f (goal >= 0.7)\n", gf_forward / gf_gemm);
  std::printf("ratio forward / dense GEMM rate: %.3f (the stricter reading)\n",
              gf_forward / (dense_flops / t_dense / 1e9));
  return 0;
}
