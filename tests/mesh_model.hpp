#pragma once
// The model the mesh tests run: every layer kind, affinity, threshold and a recurrent layer,
// EoE experts scored on part of u (layer 0) and unfactored ones (layer 1), with perturbed
// weights and thresholds at the median score so that every rule decides both ways; and what
// the relays must count for a request under round-robin placement.

#include "actors/coordinator_actor.hpp"
#include "actors/wire.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"
#include "random_model.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <unistd.h>

namespace eoe::test {

using namespace eoe::actors;

inline const char* stack = R"(
model = { name = "mesh_test", input_dim = 12, dim = 16, classes = 5, seed = 3 }
layer = [
  { kind = "eoe", experts = 5, hidden = 20, rank = 4, score_columns = 2, k = 2 },
  { kind = "eoe", experts = 4, hidden = 16, score_columns = 3, k = 2, affinity = true },
  { kind = "eoe", experts = 4, hidden = 16, rank = 4, mode = "threshold", tau = 0 },
  { kind = "router", experts = 3, hidden = 12, k = 2 },
  { kind = "hash", experts = 3, hidden = 8, k = 1 },
  { kind = "eoe", experts = 3, hidden = 12, rank = 4, k = 1, steps = 2 },
  { kind = "dense", hidden = 10 },
]
)";

inline matrix random_input(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  return random_matrix(rows, cols, seed);
}

/// The test model: perturbed weights (affinities, selection biases too) and thresholds at the
/// median score, so that every rule decides both ways. Written to a checkpoint once.
inline const std::string& checkpoint() {
  static const std::string path = [] {
    auto c = experts::parse_model_config(stack, "mesh_test");
    REQUIRE(c.has_value());
    auto m = experts::init_model(*c);
    experts::rng r{9};
    experts::for_each_parameter(m, [&](const std::string& name, matrix& t) {
      if (name.ends_with(".tau"))
        return;
      for (Eigen::Index i = 0; i < t.size(); ++i)
        t.data()[i] += static_cast<float>(0.05 * r.normal());
    });
    for (auto& lp : m.layers)
      for (auto& e : lp.experts)
        e.w2 *= 0.3f;
    auto be = kernels::make_cpu_backend();
    auto probe = experts::forward(*be, m, random_input(64, 12, 1));
    REQUIRE(probe.has_value());
    for (Eigen::Index e = 0; e < 4; ++e) {
      std::vector<float> s(probe->layers[2].scores.col(e).begin(),
                           probe->layers[2].scores.col(e).end());
      std::sort(s.begin(), s.end());
      m.layers[2].tau(0, e) = (s[31] + s[32]) / 2;
    }
    auto p = (std::filesystem::temp_directory_path()
              / ("eoe_test_mesh_" + std::to_string(getpid()) + ".ckpt"))
               .string();
    REQUIRE(experts::save_checkpoint(m, p).has_value());
    return p;
  }();
  // Gone when the test process ends (its children leave by _Exit or exec, never by exit).
  static const scratch_dir remove_later{path};
  return path;
}

inline infer_request request_of(const matrix& x, std::uint32_t deadline_ms = 10000) {
  infer_request req;
  req.tokens = to_wire(x);
  req.deadline_ms = deadline_ms;
  return req;
}

/// Outputs and records of the mesh against the reference forward: experts exactly, gates and
/// scores to 1e-6. Returns the max abs difference of the outputs over max(1, their max abs).
inline double compare(const experts::model& m, const matrix& x, const infer_result& got) {
  auto be = kernels::make_cpu_backend();
  auto want = experts::forward(*be, m, x);
  REQUIRE(want.has_value());
  const auto g = decode(got);
  REQUIRE(g.output.rows() == want->output.rows());
  REQUIRE(g.output.cols() == want->output.cols());
  REQUIRE(g.layers.size() == want->layers.size());
  for (size_t l = 0; l < g.layers.size(); ++l) {
    INFO("layer " << l);
    CHECK(g.layers[l].kind == want->layers[l].kind);
    CHECK(g.layers[l].active.offsets == want->layers[l].active.offsets);
    CHECK(g.layers[l].active.experts == want->layers[l].active.experts);
    REQUIRE(g.layers[l].active.gates.size() == want->layers[l].active.gates.size());
    for (size_t i = 0; i < g.layers[l].active.gates.size(); ++i)
      CHECK(std::abs(g.layers[l].active.gates[i] - want->layers[l].active.gates[i]) <= 1e-6f);
    if (want->layers[l].scores.size()) {
      // An answer of another epoch (a node lost: fewer experts) has other shapes.
      REQUIRE(g.layers[l].scores.rows() == want->layers[l].scores.rows());
      REQUIRE(g.layers[l].scores.cols() == want->layers[l].scores.cols());
      // Relative to the scores' size: a request stacked into a batch runs in GEMMs of other
      // shapes, which sum in another order (seen: 2e-6 on scores near 20).
      const float scale = std::max(1.0f, want->layers[l].scores.cwiseAbs().maxCoeff());
      const float diff = (g.layers[l].scores - want->layers[l].scores).cwiseAbs().maxCoeff();
      INFO("scores differ by " << diff << " at scale " << scale);
      CHECK(diff <= 1e-6f * scale);
    }
  }
  // The outputs likewise, relative to their size: float32 keeps ~7 digits, so on outputs near
  // 10 one rounding apart is 1e-6 (seen: 1.19e-6 on an x86-64-v3 build, batched).
  const float scale = std::max(1.0f, want->output.cwiseAbs().maxCoeff());
  return (g.output - want->output).cwiseAbs().maxCoeff() / scale;
}

/// Messages each node's relay receives per request, from other nodes and from its own, with
/// the once-per-node rule; `naive` counts what one message per receiving expert would be.
struct relay_counts {
  std::vector<std::uint64_t> remote, local, naive_remote;
};

inline relay_counts expected_relay_counts(const experts::model_config& c,
                                          const std::vector<std::vector<std::uint32_t>>& place,
                                          std::uint32_t head, size_t nodes) {
  relay_counts out{std::vector<std::uint64_t>(nodes), std::vector<std::uint64_t>(nodes),
                   std::vector<std::uint64_t>(nodes)};
  const auto schedule = expert_schedule(c);
  auto deliver = [&](std::uint32_t from, size_t layer) {
    std::vector<std::uint64_t> experts_at(nodes, 0);
    for (auto n : place[layer])
      ++experts_at[n];
    for (size_t d = 0; d < nodes; ++d) {
      if (experts_at[d] == 0)
        continue;
      (from == d ? out.local : out.remote)[d] += 1;
      if (from != d)
        out.naive_remote[d] += experts_at[d];
    }
  };
  for (size_t u = 0; u < schedule.size(); ++u) {
    const auto& lc = c.layers[schedule[u]];
    if (u == 0)
      deliver(head, schedule[0]);
    else
      for (auto s : place[schedule[u - 1]])
        deliver(s, schedule[u]);
    // Score shares only where the plan cannot carry the scorers (an affinity layer: each
    // expert scores its own mix); elsewhere every expert ranks its peers itself.
    if (lc.kind == experts::layer_kind::eoe && lc.mode == experts::activation_mode::topk
        && lc.experts > 1 && lc.affinity)
      for (auto s : place[schedule[u]])
        deliver(s, schedule[u]); // score shares
  }
  return out;
}

} // namespace eoe::test
