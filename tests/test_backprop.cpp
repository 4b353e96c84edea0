// Backpropagation against central finite differences in float64, for every kind of parameter:
// embedding, AoE factor A (through the score norm and the softmax gates), FFN weights and
// biases, router weights (gates, balance loss, z-loss), affinity, recurrent (tied) layers, head.
// Tolerance: relative error <= 1e-4, except where analytic and numeric differ by <= 1e-9
// (the noise of central differences in double at h = 1e-6).

#include "experts/train/backprop.hpp"
#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"
#include "gradient_check.hpp"
#include "random_model.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace eoe;
using namespace eoe::experts;
using test::config_of;

namespace {

using dmatrix = basic_matrix<double>;

/// A gradient check's model and batch: a random model of c (seed, N(0, 0.05) on its init),
/// `rows` random inputs (seed + 1) and their random labels (seed + 2).
struct gradient_case {
  basic_model<double> m;
  dmatrix x;
  std::vector<std::uint8_t> y;

  gradient_case(const model_config& c, std::uint64_t seed, Eigen::Index rows)
    : m(test::random_model<double>(c, seed, 0.05)),
      x(test::random_matrix<double>(rows, c.input_dim, seed + 1)),
      y(test::random_bytes(static_cast<size_t>(rows), c.classes, seed + 2)) {}

  step_result<double> loss(const loss_options& opt = {}) const {
    return loss_and_gradient<double>(m, x, y, opt, nullptr);
  }

  void median_thresholds() {
    test::median_thresholds(m, loss().layers);
  }

  /// Every tensor's analytic gradient against central differences on 12 of its entries: the
  /// worst relative error at most 1e-4.
  test::check_stats check(const loss_options& opt) const {
    basic_model<double> g;
    loss_and_gradient<double>(m, x, y, opt, &g);
    auto probe = m;
    auto loss_at = [&](const basic_model<double>& at) {
      return loss_and_gradient<double>(at, x, y, opt, nullptr).loss;
    };
    auto st = test::gradient_check(probe, g, loss_at, 12, {".tau"});
    INFO("worst: " << st.worst_at);
    CHECK(st.worst <= 1e-4);
    return st;
  }
};

/// Runs m on x through the training forward and the reference forward and checks that they
/// agree: outputs, active experts and scores. Returns the reference's result.
forward_result check_training_forward(const model& m, const matrix& x) {
  std::vector<std::uint8_t> y(static_cast<size_t>(x.rows()), 0);
  auto train = loss_and_gradient<float>(m, x, y, {}, nullptr);
  auto be = kernels::make_cpu_backend();
  auto ref = forward(*be, m, x);
  REQUIRE(ref.has_value());
  CHECK((train.logits - ref->output).cwiseAbs().maxCoeff() <= 1e-5f);
  REQUIRE(train.layers.size() == ref->layers.size());
  for (size_t l = 0; l < train.layers.size(); ++l) {
    CHECK(train.layers[l].active.experts == ref->layers[l].active.experts);
    if (ref->layers[l].scores.size())
      CHECK((train.layers[l].scores - ref->layers[l].scores).cwiseAbs().maxCoeff() <= 1e-5f);
  }
  return std::move(*ref);
}

} // namespace

TEST_CASE("gradients of every layer kind match finite differences", "[backprop]") {
  gradient_case t(config_of(R"(
model = { input_dim = 7, dim = 6, classes = 4, seed = 3 }
layer = [
  { kind = "eoe", experts = 4, hidden = 5, rank = 3, k = 2 },
  { kind = "eoe", experts = 3, hidden = 4, rank = 2, k = 2, affinity = true, activation = "gelu" },
  { kind = "router", experts = 3, hidden = 5, k = 2 },
  { kind = "hash", experts = 2, hidden = 3, k = 1 },
  { kind = "dense", hidden = 4 },
  { kind = "eoe", experts = 2, hidden = 4, rank = 3, mode = "threshold", tau = 0, affinity = true },
]
)"),
                  5, 24);
  for (auto l : {1, 5})
    for (Eigen::Index i = 0; i < t.m.layers[l].affinity.size(); ++i)
      t.m.layers[l].affinity.data()[i] = 0.5 + 0.1 * static_cast<double>(i); // not all ones
  t.median_thresholds();
  const auto st = t.check(
    {.balance_coef = 0.1, .z_coef = 0.01, .score_balance_coef = 0.3, .label_smoothing = 0.1});
  CHECK(st.checked > 200);
}

TEST_CASE("gradients of router k=1, recurrent layers and unbiased experts match", "[backprop]") {
  gradient_case t(config_of(R"(
model = { input_dim = 5, dim = 6, classes = 3 }
layer = [
  { kind = "router", experts = 3, hidden = 4, k = 1, bias = false },
  { kind = "eoe", experts = 3, hidden = 5, rank = 2, k = 1, steps = 3 },
  { kind = "eoe", experts = 1, hidden = 4, rank = 3, mode = "threshold", tau = 0, steps = 2, activation = "gelu" },
]
)"),
                  8, 20);
  t.median_thresholds();
  t.check({.balance_coef = 0.2, .z_coef = 0.05});
}

TEST_CASE("gradients with dropout match: the mask is a function of its seed", "[backprop]") {
  const gradient_case t(config_of(R"(
model = { input_dim = 5, dim = 6, classes = 3 }
layer = [
  { kind = "eoe", experts = 3, hidden = 8, rank = 3, k = 2 },
  { kind = "dense", hidden = 8 },
]
)"),
                        15, 18);
  loss_options opt{.dropout = 0.3, .dropout_seed = 42};
  const auto a = t.loss(opt);
  CHECK(a.loss == t.loss(opt).loss); // same seed, same mask
  opt.dropout_seed = 43;
  CHECK(t.loss(opt).loss != a.loss);
  opt.dropout_seed = 42;
  t.check(opt);
}

TEST_CASE("gradients reach A through the score and gates alone", "[backprop]") {
  // With k = 1 the gate is 1 and A only feeds the FFN; with k = 2 the softmax gates make the
  // loss depend on the scores: the A gradient must then differ from the FFN-only part.
  const gradient_case t(config_of(R"(
model = { input_dim = 4, dim = 4, classes = 2 }
layer = [
  { kind = "eoe", experts = 3, hidden = 4, rank = 2, k = 2 },
]
)"),
                        11, 16);
  t.check({});
}

TEST_CASE("the training forward computes the reference forward's outputs", "[backprop]") {
  auto c = config_of(R"(
model = { input_dim = 10, dim = 12, classes = 5 }
layer = [
  { kind = "eoe", experts = 4, hidden = 16, rank = 3, k = 2 },
  { kind = "router", experts = 3, hidden = 8, k = 2 },
  { kind = "eoe", experts = 3, hidden = 8, rank = 4, k = 1, steps = 2 },
]
)");
  check_training_forward(init_model(c), test::random_matrix<double>(40, 10, 14).cast<float>());
}

TEST_CASE("gradients of experts scored on part of their first projection match", "[backprop]") {
  // Factored with the score on 2 of u's 4 columns; not factored (no rank) with the score on 3
  // of W1's 5 columns, once with affinity (an input per expert) and once in threshold mode.
  gradient_case t(config_of(R"(
model = { input_dim = 5, dim = 6, classes = 3 }
layer = [
  { kind = "eoe", experts = 3, hidden = 5, rank = 4, score_columns = 2, k = 2 },
  { kind = "eoe", experts = 3, hidden = 5, score_columns = 3, k = 2, affinity = true, activation = "gelu" },
  { kind = "eoe", experts = 2, hidden = 4, score_columns = 2, mode = "threshold", tau = 0 },
]
)"),
                  21, 24);
  auto& m = t.m;
  for (Eigen::Index i = 0; i < m.layers[1].affinity.size(); ++i)
    m.layers[1].affinity.data()[i] = 0.5 + 0.1 * static_cast<double>(i);
  t.median_thresholds();
  CHECK(t.check({}).checked > 150);

  // With the score balance loss on, every expert's score on every token has a gradient; the
  // loss adds coef times each top-k layer's balance loss on its scores (the threshold layer
  // has none).
  const loss_options balanced{.score_balance_coef = 0.5};
  t.check(balanced);
  const auto plain = t.loss();
  const auto with = t.loss(balanced);
  double direct = 0;
  for (auto& tr : with.layers)
    if (m.config.layers[tr.config_layer].mode == activation_mode::topk)
      direct += 0.5 * score_balance(tr.scores, tr.active).loss;
  CHECK(direct > 0.5);
  CHECK(with.loss - plain.loss == Approx(direct).epsilon(1e-12));

  // The score is the norm of those columns and nothing else: a change to the other columns
  // of an unfactored expert's W1 leaves the layer's scores as they were.
  const auto before = t.loss();
  m.layers[2].experts[1].w1.rightCols(2).array() += 1.0;
  const auto after = t.loss();
  CHECK(before.layers[2].scores.isApprox(after.layers[2].scores, 1e-12));
  CHECK(before.loss != after.loss);
}

TEST_CASE("experts scored on part of their first projection: training and reference forward agree",
          "[backprop]") {
  auto c = config_of(R"(
model = { input_dim = 10, dim = 12, classes = 5 }
layer = [
  { kind = "eoe", experts = 4, hidden = 16, rank = 6, score_columns = 2, k = 2 },
  { kind = "eoe", experts = 3, hidden = 8, score_columns = 3, k = 2, affinity = true },
]
)");
  const auto m = init_model(c);
  const matrix x = test::random_matrix<double>(40, 10, 24).cast<float>();
  const auto ref = check_training_forward(m, x);
  // Layer 0's scores are the norms of x A[:, :2] on its input, computed here directly.
  const matrix h0 = (x * m.embed_w).rowwise() + m.embed_b.row(0);
  for (int e = 0; e < 4; ++e) {
    const vector direct = (h0 * m.layers[0].experts[e].a.leftCols(2)).rowwise().norm();
    CHECK((ref.layers[0].scores.col(e) - direct).cwiseAbs().maxCoeff() <= 1e-5f);
  }
}
