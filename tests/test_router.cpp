// The softmax router baseline: selection, gates, and its losses against hand-computed values.

#include "experts/nn/router.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace eoe;
using namespace eoe::experts;

TEST_CASE("router balance loss and z-loss match a hand computation", "[router]") {
  // Two tokens, two experts. logits: token 0 (ln 3, 0) -> probs (0.75, 0.25);
  // token 1 (0, 0) -> probs (0.5, 0.5).
  matrix logits(2, 2);
  logits << std::log(3.0f), 0.0f, 0.0f, 0.0f;
  auto d = route_topk(logits, 1);
  CHECK(d.probs(0, 0) == Approx(0.75));
  CHECK(d.probs(0, 1) == Approx(0.25));
  // Top-1: token 0 -> expert 0; token 1 ties -> expert 0 (lower index).
  REQUIRE(d.active.experts_of(0)[0] == 0);
  REQUIRE(d.active.experts_of(1)[0] == 0);
  // f = (1, 0); P = (0.625, 0.375); loss = E * sum f P = 2 * 0.625 = 1.25.
  CHECK(d.balance_loss == Approx(1.25));
  // z-loss: mean of logsumexp^2 = (ln 4)^2 / 2 + (ln 2)^2 / 2.
  const double z = (std::pow(std::log(4.0), 2) + std::pow(std::log(2.0), 2)) / 2;
  CHECK(d.z_loss == Approx(z).epsilon(1e-6));
  // k = 1 gates are the router probabilities themselves (Switch).
  CHECK(d.active.gates_of(0)[0] == Approx(0.75));
  CHECK(d.active.gates_of(1)[0] == Approx(0.5));
}

TEST_CASE("router with k = 2 renormalises gates; a uniform router has balance loss 1",
          "[router]") {
  matrix logits = matrix::Zero(4, 4);
  for (int t = 0; t < 4; ++t)
    logits(t, t) = 1.0f; // each token prefers its own expert a little
  auto d = route_topk(logits, 2);
  for (size_t t = 0; t < 4; ++t) {
    auto g = d.active.gates_of(t);
    REQUIRE(g.size() == 2);
    CHECK(g[0] + g[1] == Approx(1.0));
  }
  // Token 0: expert 0 (logit 1) and expert 1 (tie among 1..3, lowest index).
  CHECK(d.active.experts_of(0)[0] == 0);
  CHECK(d.active.experts_of(0)[1] == 1);
  // Token t picks t and the lowest other index: {0,1}, {0,1}, {0,2}, {0,3}, so the loads
  // are (4, 2, 1, 1) of 8 assignments. Every expert has the same mean probability
  // P = (p_hi + 3 p_lo) / 4 = 1/4, so the loss is E * P * sum f = 1.
  const double p_hi = std::exp(1.0) / (std::exp(1.0) + 3), p_lo = 1 / (std::exp(1.0) + 3);
  for (int e = 0; e < 4; ++e)
    CHECK(d.probs.col(e).mean() == Approx((p_hi + 3 * p_lo) / 4));
  CHECK(d.balance_loss == Approx(1.0).epsilon(1e-6));
  // Uneven loads and probabilities: logits (2, 0), (0, 1), (3, 0) -> top-1 picks 0, 1, 0.
  const double a = std::exp(2.0) / (std::exp(2.0) + 1), b = 1 / (1 + std::exp(1.0));
  matrix uneven(3, 2);
  uneven << 2.0f, 0.0f, 0.0f, 1.0f, 3.0f, 0.0f;
  auto u = route_topk(uneven, 1);
  const double c = std::exp(3.0) / (std::exp(3.0) + 1);
  const double P0 = (a + b + c) / 3, P1 = 1 - P0; // probabilities of expert 1 are the rest
  CHECK(u.balance_loss == Approx(2 * (2.0 / 3 * P0 + 1.0 / 3 * P1)).epsilon(1e-6));
}
