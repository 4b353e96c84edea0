// The balance loss of EoE top-k layers on the experts' self-scores: against a hand computation,
// against the router's own balance loss on the same numbers, and its gradient against finite
// differences.

#include "experts/base/rng.hpp"
#include "experts/nn/router.hpp"
#include "experts/nn/score_balance.hpp"
#include "experts/nn/self_activation.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace eoe;
using namespace eoe::experts;

TEST_CASE("score balance loss matches a hand computation", "[score_balance]") {
  // Two tokens, two experts, top-1. Scores: token 0 (0, ln 3) -> probs (0.25, 0.75), token 1
  // (0, ln 3) the same: both pick expert 1, f = (0, 1), P = (0.25, 0.75), loss 2 * 0.75.
  matrix scores(2, 2);
  scores << 0.0f, std::log(3.0f), 0.0f, std::log(3.0f);
  const auto active = select_topk(scores, 1);
  const auto b = score_balance(scores, active);
  CHECK(b.probs(0, 1) == Approx(0.75));
  CHECK(b.load[0] == 0.0f);
  CHECK(b.load[1] == 1.0f);
  CHECK(b.loss == Approx(1.5));

  // Uniform probabilities give 1 whatever the load: equal scores all go to the lower indices.
  const matrix equal = matrix::Constant(5, 4, 2.0f);
  const auto tied = select_topk(equal, 2);
  const auto u = score_balance(equal, tied);
  CHECK(u.load[0] == 0.5f);
  CHECK(u.load[3] == 0.0f);
  CHECK(u.loss == Approx(1.0));
}

TEST_CASE("score balance loss equals the router's balance loss on the same numbers",
          "[score_balance]") {
  // softmax is monotone, so top-k of the scores and of their softmax pick the same experts;
  // the router computes f and P its own way (experts/nn/router.hpp).
  rng r{5};
  matrix scores(37, 6);
  for (Eigen::Index i = 0; i < scores.size(); ++i)
    scores.data()[i] = static_cast<float>(2.0 * r.uniform());
  for (int k : {1, 2, 3}) {
    const auto b = score_balance(scores, select_topk(scores, k));
    const auto d = route_topk(scores, k);
    CHECK(b.loss == Approx(d.balance_loss).epsilon(1e-5));
    CHECK((b.probs - d.probs).cwiseAbs().maxCoeff() <= 1e-6f);
  }
}

TEST_CASE("score balance gradient matches finite differences", "[score_balance]") {
  // The selection (f) is held fixed: it is a count and carries no gradient.
  using dmatrix = basic_matrix<double>;
  rng r{9};
  dmatrix scores(11, 5);
  for (Eigen::Index i = 0; i < scores.size(); ++i)
    scores.data()[i] = 3.0 * r.uniform();
  const auto active = select_topk<double>(scores, 2);
  const double coef = 0.7;
  dmatrix grad = dmatrix::Zero(scores.rows(), scores.cols());
  add_score_balance_gradient(score_balance(scores, active), coef, grad);
  double worst = 0;
  for (Eigen::Index i = 0; i < scores.size(); ++i) {
    const double h = 1e-6, keep = scores.data()[i];
    scores.data()[i] = keep + h;
    const double up = coef * score_balance(scores, active).loss;
    scores.data()[i] = keep - h;
    const double down = coef * score_balance(scores, active).loss;
    scores.data()[i] = keep;
    const double numeric = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(numeric - grad.data()[i]));
  }
  CHECK(worst <= 1e-8);
  CHECK(grad.cwiseAbs().maxCoeff() > 1e-3); // not trivially zero
  // Every token's gradient sums to zero: a common shift of its scores leaves the softmax.
  CHECK(grad.rowwise().sum().cwiseAbs().maxCoeff() <= 1e-12);
}
