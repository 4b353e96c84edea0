// Adding and removing experts of a model (experts/membership): zero experts leave the outputs
// bit-identical, clones in threshold layers leave them equal within 1e-6, removal keeps every
// layer tensor consistent, and the changes that cannot preserve the function are refused.

#include "experts/model/checkpoint.hpp"
#include "experts/model/forward.hpp"
#include "experts/model/membership.hpp"
#include "mesh_model.hpp"
#include "reference_forward.hpp"

#include <catch2/catch.hpp>

using namespace eoe;
using namespace eoe::experts;

namespace {

model test_model() {
  auto m = load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  return std::move(*m);
}

forward_result run(const model& m, const matrix& x) {
  auto be = kernels::make_cpu_backend();
  auto r = forward(*be, m, x);
  REQUIRE(r.has_value());
  return std::move(*r);
}

} // namespace

TEST_CASE("a zero expert changes no output bit, in top-k, affinity and threshold layers",
          "[membership]") {
  const auto m = test_model();
  const auto x = test::random_input(50, 12, 77);
  const auto before = run(m, x);
  for (size_t layer : {0, 1, 2, 5}) {
    INFO("layer " << layer);
    auto added = with_expert(m, layer, zero_expert(m, layer, 5), {});
    REQUIRE(added.has_value());
    CHECK(added->config.layers[layer].experts == m.config.layers[layer].experts + 1);
    const auto after = run(*added, x);
    CHECK(after.output == before.output); // bit for bit
    for (size_t u = 0; u < after.layers.size(); ++u) {
      CHECK(after.layers[u].active.experts == before.layers[u].active.experts);
      CHECK(after.layers[u].active.gates == before.layers[u].active.gates);
    }
    // Every tensor is where the config says, and the model saves and loads.
    auto back = parse_checkpoint(checkpoint_bytes(*added), "added");
    REQUIRE(back.has_value());
    CHECK(run(*back, x).output == before.output);
  }
}

TEST_CASE("a zero expert in a layer of unfactored experts changes no output bit", "[membership]") {
  auto c = parse_model_config(R"(
model = { input_dim = 12, dim = 8, classes = 3 }
layer = [
  { kind = "eoe", experts = 3, hidden = 10, score_columns = 3, k = 2 },
  { kind = "eoe", experts = 2, hidden = 6, score_columns = 2, mode = "threshold", tau = 0.5 },
]
)",
                              "t");
  REQUIRE(c.has_value());
  const auto m = init_model(*c);
  const auto x = test::random_input(50, 12, 78);
  const auto before = run(m, x);
  for (size_t layer : {0, 1}) {
    INFO("layer " << layer);
    const auto e = zero_expert(m, layer, 6);
    CHECK(e.a.size() == 0);
    CHECK(e.w1.leftCols(c->layers[layer].score_columns).isZero());
    CHECK_FALSE(e.w1.isZero()); // the rest can train
    auto added = with_expert(m, layer, e, {});
    REQUIRE(added.has_value());
    const auto after = run(*added, x);
    CHECK(after.output == before.output);
    auto back = parse_checkpoint(checkpoint_bytes(*added), "added");
    REQUIRE(back.has_value());
    CHECK(run(*back, x).output == before.output);
  }
  // A factored expert does not fit.
  auto c2 = *c;
  c2.layers[0].rank = 4;
  c2.layers[0].score_columns = 4;
  const auto factored = zero_expert(init_model(c2), 0, 6);
  const auto refused = with_expert(m, 0, factored, {});
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().message
        == "add expert: the expert's shapes do not fit layer 0 (D=8, not factored, H=10, with "
           "biases)");
}

TEST_CASE("a clone in a threshold layer leaves the outputs equal within 1e-6", "[membership]") {
  const auto m = test_model();
  const auto x = test::random_input(60, 12, 78);
  const auto before = run(m, x);
  for (size_t position = 0; position < 4; ++position) {
    auto cloned = with_clone(m, 2, position);
    REQUIRE(cloned.has_value());
    const auto after = run(*cloned, x);
    CHECK((after.output - before.output).cwiseAbs().maxCoeff() <= 1e-6f);
    // The clone fires exactly where its original fires.
    const auto& rec = after.layers[2].active;
    for (size_t t = 0; t < rec.tokens(); ++t) {
      auto es = rec.experts_of(t);
      const bool original = std::find(es.begin(), es.end(), static_cast<int>(position)) != es.end();
      const bool clone = std::find(es.begin(), es.end(), 4) != es.end();
      CHECK(original == clone);
    }
  }
  auto refused = with_clone(m, 0, 1);
  REQUIRE_FALSE(refused.has_value());
  CHECK_THAT(refused.error().message,
             Catch::StartsWith("clone expert: layer 0 runs top-k; a clone ties its original"));
}

TEST_CASE("removing an expert keeps every layer tensor consistent", "[membership]") {
  const auto m = test_model();
  const auto x = test::random_input(30, 12, 79);
  for (auto [layer, position] : {std::pair{0, 3}, {1, 0}, {2, 2}, {5, 1}}) {
    INFO("layer " << layer << " position " << position);
    auto removed = without_expert(m, layer, position);
    REQUIRE(removed.has_value());
    const auto& lc = removed->config.layers[layer];
    CHECK(lc.experts == m.config.layers[layer].experts - 1);
    auto back = parse_checkpoint(checkpoint_bytes(*removed), "removed", &removed->config);
    REQUIRE(back.has_value());
    // The surviving experts keep their weights and their affinities.
    const auto& before = m.layers[layer];
    const auto& after = removed->layers[layer];
    for (int e = 0, src = 0; e < lc.experts; ++e, ++src) {
      if (src == position)
        ++src;
      CHECK(after.experts[e].w2 == before.experts[src].w2);
      CHECK(after.gate_bias(0, e) == before.gate_bias(0, src));
      if (lc.affinity)
        CHECK(after.affinity.col(e) == before.affinity.col(src));
    }
    auto r = run(*removed, x);
    auto want = test::reference_forward(*removed, x);
    for (Eigen::Index t = 0; t < r.output.rows(); ++t)
      for (Eigen::Index j = 0; j < r.output.cols(); ++j)
        CHECK(std::abs(r.output(t, j) - want.output[t][j]) <= 1e-5);
  }
}

TEST_CASE("changes that cannot be made are refused by name", "[membership]") {
  const auto m = test_model();
  auto router = with_expert(m, 3, zero_expert(m, 0, 1), {});
  REQUIRE_FALSE(router.has_value());
  CHECK_THAT(router.error().message,
             Catch::StartsWith("add expert: layer 3 is a \"router\" layer; experts join and "
                               "leave eoe layers only"));
  auto shapes = with_expert(m, 1, zero_expert(m, 0, 1), {}); // layer 0's rank is 4, layer 1's 6
  REQUIRE_FALSE(shapes.has_value());
  CHECK_THAT(shapes.error().message, Catch::Contains("do not fit layer 1"));
  auto two_left = without_expert(*without_expert(*without_expert(m, 0, 0), 0, 0), 0, 0);
  REQUIRE(two_left.has_value()); // 5 experts, top-2: three can go
  auto k2 = without_expert(*two_left, 0, 0);
  REQUIRE_FALSE(k2.has_value());
  CHECK(k2.error().message == "remove expert: layer 0 runs top-2 and would keep 1 expert(s)");
}
