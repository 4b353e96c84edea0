// The reference forward against the naive per-token implementation (max abs diff <= 1e-5),
// plus the rules it must keep: pass-through, affinity, ties, input checks.

#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"
#include "gradient_check.hpp"
#include "random_model.hpp"
#include "reference_forward.hpp"

#include <catch2/catch.hpp>

using namespace eoe;
using namespace eoe::experts;

using test::config_of;

namespace {

/// init_model, then every tensor (biases and affinities too) perturbed so that each matters.
model random_model(const model_config& c, std::uint64_t seed) {
  return test::random_model(c, seed, 0.02);
}

/// A random model of c (seed) and `rows` random inputs for it (seed + 1).
struct random_case {
  model m;
  matrix x;

  random_case(const model_config& c, std::uint64_t seed, Eigen::Index rows)
    : m(random_model(c, seed)),
      x(test::random_matrix(rows, c.input_dim > 0 ? c.input_dim : c.dim, seed + 1)) {}
};

/// Runs both implementations and compares outputs, active sets and gates.
double compare_with_reference(const model& m, const matrix& x,
                              std::vector<std::uint64_t> ids = {}) {
  auto be = kernels::make_cpu_backend();
  auto got = forward(*be, m, x, ids);
  REQUIRE(got.has_value());
  auto want = test::reference_forward(m, x, ids);
  double max_diff = 0;
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (Eigen::Index j = 0; j < got->output.cols(); ++j)
      max_diff = std::max(max_diff, std::abs(double(got->output(t, j)) - want.output[t][j]));
  INFO("max |output| " << got->output.cwiseAbs().maxCoeff() << ", max abs diff " << max_diff);
  CHECK(max_diff <= 1e-5);
  REQUIRE(got->layers.size() == m.config.unrolled_layers());
  for (size_t l = 0; l < got->layers.size(); ++l)
    for (size_t t = 0; t < static_cast<size_t>(x.rows()); ++t) {
      auto es = got->layers[l].active.experts_of(t);
      auto gs = got->layers[l].active.gates_of(t);
      INFO("layer " << l << " token " << t);
      REQUIRE(std::vector<int>(es.begin(), es.end()) == want.active[l][t]);
      for (size_t i = 0; i < gs.size(); ++i)
        CHECK(gs[i] == Approx(want.gates[l][t][i]).margin(1e-6));
    }
  return max_diff;
}

const std::string mixed_stack = R"(
model = { input_dim = 20, dim = 24, classes = 7, seed = 11 }
layer = [
  { kind = "eoe", experts = 6, hidden = 40, rank = 5, mode = "topk", k = 2 },
  { kind = "eoe", experts = 5, hidden = 32, rank = 6, mode = "topk", k = 3, affinity = true, activation = "gelu" },
  { kind = "router", experts = 4, hidden = 30, k = 2 },
  { kind = "hash", experts = 3, hidden = 16, k = 1 },
  { kind = "dense", hidden = 20 },
  { kind = "eoe", experts = 4, hidden = 28, rank = 4, mode = "threshold", tau = [0.4, 0.6, 0.8, 1.0], affinity = true },
]
)";

} // namespace

TEST_CASE("forward equals the naive reference on a stack of every layer kind", "[forward]") {
  const random_case t(config_of(mixed_stack), 3, 64);
  const auto& [m, x] = t;
  CHECK(compare_with_reference(m, x) <= 1e-5);
  // Explicit token ids drive the hash layer.
  std::vector<std::uint64_t> ids;
  for (int t = 0; t < 64; ++t)
    ids.push_back(1000 + 37 * t);
  CHECK(compare_with_reference(m, x, ids) <= 1e-5);
}

TEST_CASE("forward equals the reference without embedding, head or biases; router k=1",
          "[forward]") {
  const random_case t(config_of(R"(
model = { dim = 16 }
layer = [
  { kind = "router", experts = 4, hidden = 24, k = 1, bias = false },
  { kind = "eoe", experts = 3, hidden = 12, rank = 16, k = 1, bias = false, activation = "gelu" },
]
)"),
                      5, 33);
  CHECK(compare_with_reference(t.m, t.x) <= 1e-5);
}

TEST_CASE("experts scored on the first columns of x A or of x W1 (not factored), as the reference",
          "[forward]") {
  const random_case t(config_of(R"(
model = { input_dim = 10, dim = 16, classes = 4 }
layer = [
  { kind = "eoe", experts = 5, hidden = 20, rank = 6, score_columns = 2, k = 2 },
  { kind = "eoe", experts = 4, hidden = 24, score_columns = 3, k = 2, affinity = true },
  { kind = "eoe", experts = 3, hidden = 12, score_columns = 4, mode = "threshold", tau = [0.5, 0.7, 0.9] },
]
)"),
                      7, 48);
  CHECK(compare_with_reference(t.m, t.x) <= 1e-5);
}

TEST_CASE("recurrent layers run their tied weights step after step, as the reference",
          "[forward]") {
  random_case t(config_of(R"(
model = { input_dim = 12, dim = 16, classes = 4 }
layer = [
  { kind = "eoe", experts = 4, hidden = 20, rank = 4, k = 2, steps = 3 },
  { kind = "eoe", experts = 1, hidden = 24, rank = 8, mode = "threshold", tau = 0.8, steps = 4 },
  { kind = "hash", experts = 3, hidden = 8, k = 1, steps = 2 },
]
)"),
                21, 30);
  auto& [m, x] = t;
  for (auto& lp : m.layers)
    for (auto& e : lp.experts)
      e.w2 *= 0.2f; // nine residual steps: keep the stream near unit scale
  auto be = kernels::make_cpu_backend();
  auto r = forward(*be, m, x);
  REQUIRE(r.has_value());
  CHECK(r->layers.size() == 9); // one record per step
  // Put the threshold between the middle scores of its first step, so that it decides both
  // ways and no score sits on it.
  std::vector<float> first(r->layers[3].scores.data(), r->layers[3].scores.data() + 30);
  std::sort(first.begin(), first.end());
  m.layers[1].tau(0, 0) = (first[14] + first[15]) / 2;
  r = forward(*be, m, x);
  CHECK(compare_with_reference(m, x) <= 1e-5);
  // The single threshold expert decides per step and per token whether to run again.
  size_t fired = 0;
  for (size_t step = 3; step < 7; ++step)
    for (size_t t = 0; t < 30; ++t)
      fired += r->layers[step].active.experts_of(t).size();
  CHECK(fired > 0);
  CHECK(fired < 4 * 30);
}

TEST_CASE("parameter_shapes and for_each_parameter agree on names, order and shapes",
          "[forward]") {
  auto c = config_of(mixed_stack);
  auto shapes = parameter_shapes(c);
  auto m = init_model(c);
  size_t i = 0;
  for_each_parameter(m, [&](const std::string& name, const matrix& t) {
    REQUIRE(i < shapes.size());
    CHECK(shapes[i].name == name);
    CHECK(shapes[i].rows == t.rows());
    CHECK(shapes[i].cols == t.cols());
    ++i;
  });
  CHECK(i == shapes.size());
}

TEST_CASE("a token with no active expert passes through unchanged", "[forward]") {
  random_case t(config_of(R"(
model = { input_dim = 10, dim = 12, classes = 3 }
layer = [
  { kind = "eoe", experts = 4, hidden = 8, rank = 3, mode = "threshold", tau = 1e30 },
]
)"),
                7, 9);
  auto& [m, x] = t;
  auto be = kernels::make_cpu_backend();
  auto got = forward(*be, m, x);
  REQUIRE(got.has_value());
  for (size_t t = 0; t < 9; ++t)
    CHECK(got->layers[0].active.experts_of(t).empty());
  // Nothing fired: the output is the head applied to the embedding.
  matrix want = ((x * m.embed_w).rowwise() + m.embed_b.row(0)) * m.head_w;
  want.rowwise() += m.head_b.row(0);
  CHECK((got->output - want).cwiseAbs().maxCoeff() <= 1e-5f);
  // With tau = 0 every expert fires on every token, and the reference agrees.
  m.layers[0].tau.setZero();
  m.config.layers[0].tau.assign(4, 0.0f);
  auto all = forward(*be, m, x);
  for (size_t t = 0; t < 9; ++t)
    CHECK(all->layers[0].active.experts_of(t).size() == 4);
  CHECK(compare_with_reference(m, x) <= 1e-5);
}

TEST_CASE("affinity of ones is the plain residual mix; other affinities change the input",
          "[forward]") {
  auto with = config_of(mixed_stack);
  auto without = with;
  without.layers[1].affinity = false;
  without.layers[5].affinity = false;
  random_case t(with, 9, 40);
  auto& [m_with, x] = t;
  for (auto l : {1, 5})
    m_with.layers[l].affinity.setOnes();
  auto m_without = zero_model(without);
  for_each_parameter(m_without, [&](const std::string& name, matrix& t) {
    for_each_parameter(m_with, [&](const std::string& n2, const matrix& src) {
      if (n2 == name)
        t = src;
    });
  });
  auto be = kernels::make_cpu_backend();
  auto a = forward(*be, m_with, x);
  auto b = forward(*be, m_without, x);
  REQUIRE((a && b));
  CHECK((a->output - b->output).cwiseAbs().maxCoeff() <= 1e-6f);
  m_with.layers[1].affinity(0, 0) = 0.0f; // expert 0 of layer 0 no longer feeds expert 0
  auto c = forward(*be, m_with, x);
  CHECK((c->output - b->output).cwiseAbs().maxCoeff() > 1e-3f);
  CHECK(compare_with_reference(m_with, x) <= 1e-5);
}

TEST_CASE("identical experts tie, and the lower index wins", "[forward]") {
  random_case t(config_of(R"(
model = { dim = 8 }
layer = [
  { kind = "eoe", experts = 3, hidden = 8, rank = 4, k = 1 },
]
)"),
                12, 50);
  auto& m = t.m;
  m.layers[0].experts[2] = m.layers[0].experts[1]; // a clone: same score everywhere
  // Make 1 and 2 beat 0 everywhere: scale up their scoring factor.
  m.layers[0].experts[1].a *= 100.0f;
  m.layers[0].experts[2].a *= 100.0f;
  auto be = kernels::make_cpu_backend();
  auto r = forward(*be, m, t.x);
  REQUIRE(r.has_value());
  for (size_t t = 0; t < 50; ++t) {
    REQUIRE(r->layers[0].active.experts_of(t).size() == 1);
    CHECK(r->layers[0].active.experts_of(t)[0] == 1);
    CHECK(r->layers[0].scores(static_cast<Eigen::Index>(t), 1)
          == r->layers[0].scores(static_cast<Eigen::Index>(t), 2));
  }
}

TEST_CASE("forward rejects inputs of the wrong shape by name", "[forward]") {
  auto m = init_model(default_model_config());
  auto be = kernels::make_cpu_backend();
  auto r = forward(*be, m, matrix::Zero(2, 783));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::data_invalid);
  CHECK(r.error().message == "forward: the input has 783 columns, the model 'default' expects 784");
  const std::uint64_t ids[] = {1, 2, 3};
  auto r2 = forward(*be, m, matrix::Zero(2, 784), ids);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().message == "forward: 3 token ids for 2 tokens");
}

TEST_CASE("the embedded default model runs and activates k experts per topk layer",
          "[forward]") {
  auto m = init_model(default_model_config());
  auto x = test::random_matrix(16, 784, 14);
  auto be = kernels::make_cpu_backend();
  auto r = forward(*be, m, x);
  REQUIRE(r.has_value());
  CHECK(r->output.rows() == 16);
  CHECK(r->output.cols() == 10);
  for (size_t t = 0; t < 16; ++t) {
    CHECK(r->layers[0].active.experts_of(t).size() == 2);
    CHECK(r->layers[1].active.experts_of(t).size() == 2);
  }
  CHECK(compare_with_reference(m, x) <= 1e-5);
}
