// Self-activation: top-k with its tie rule, thresholds, gates, and the per-expert rule
// agreeing with the central selection.

#include "experts/nn/self_activation.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using namespace eoe;
using namespace eoe::experts;

namespace {

matrix rows(std::initializer_list<std::initializer_list<float>> r) {
  matrix m(static_cast<Eigen::Index>(r.size()), static_cast<Eigen::Index>(r.begin()->size()));
  Eigen::Index i = 0;
  for (auto& row : r) {
    Eigen::Index j = 0;
    for (float v : row)
      m(i, j++) = v;
    ++i;
  }
  return m;
}

std::vector<int> experts_of(const activation_set& a, size_t t) {
  auto es = a.experts_of(t);
  return {es.begin(), es.end()};
}

} // namespace

TEST_CASE("topk keeps the k highest scores", "[self_activation]") {
  auto a = select_topk(rows({{0.1f, 0.9f, 0.5f, 0.7f}, {3.0f, 2.0f, 1.0f, 0.0f}}), 2);
  REQUIRE(a.tokens() == 2);
  CHECK(experts_of(a, 0) == std::vector<int>{1, 3});
  CHECK(experts_of(a, 1) == std::vector<int>{0, 1});
}

TEST_CASE("topk ties go to the lower expert index", "[self_activation]") {
  // All equal: the first k indices win.
  auto a = select_topk(rows({{1.0f, 1.0f, 1.0f, 1.0f}}), 2);
  CHECK(experts_of(a, 0) == std::vector<int>{0, 1});
  // A tie at the boundary: experts 1 and 3 tie for the second place; 1 wins.
  auto b = select_topk(rows({{5.0f, 2.0f, 0.0f, 2.0f}}), 2);
  CHECK(experts_of(b, 0) == std::vector<int>{0, 1});
  // A tie for first place with k = 1.
  auto c = select_topk(rows({{0.0f, 4.0f, 4.0f, 1.0f}}), 1);
  CHECK(experts_of(c, 0) == std::vector<int>{1});
  // Ranks spell the rule out.
  const float s[] = {0.0f, 4.0f, 4.0f, 1.0f};
  CHECK(topk_rank<float>(s, 1) == 0);
  CHECK(topk_rank<float>(s, 2) == 1);
  CHECK(topk_rank<float>(s, 3) == 2);
  CHECK(topk_rank<float>(s, 0) == 3);
}

TEST_CASE("every expert deciding for itself gives the central top-k", "[self_activation]") {
  // Scores from a coarse grid so that ties are frequent.
  matrix scores(200, 6);
  for (Eigen::Index i = 0; i < scores.size(); ++i)
    scores.data()[i] = static_cast<float>((i * 7919) % 5);
  for (int k = 1; k <= 6; ++k) {
    auto a = select_topk(scores, k);
    for (Eigen::Index t = 0; t < scores.rows(); ++t) {
      std::span<const float> row{scores.data() + t * 6, 6};
      std::vector<int> self;
      for (int e = 0; e < 6; ++e)
        if (active_in_topk(row, e, k))
          self.push_back(e);
      CHECK(self == experts_of(a, static_cast<size_t>(t)));
      CHECK(self.size() == static_cast<size_t>(k));
    }
  }
}

TEST_CASE("threshold is strict and may leave a token with no expert", "[self_activation]") {
  const float tau[] = {1.0f, 2.0f, 0.5f};
  auto a = select_threshold<float>(rows({{1.0f, 2.5f, 0.6f}, {0.0f, 0.0f, 0.5f}, {9.0f, 9.0f, 9.0f}}),
                            tau);
  CHECK(experts_of(a, 0) == std::vector<int>{1, 2}); // 1.0 is not > 1.0
  CHECK(experts_of(a, 1).empty());                    // 0.5 is not > 0.5
  CHECK(experts_of(a, 2) == std::vector<int>{0, 1, 2});
  CHECK(a.gates_of(1).empty());
}

TEST_CASE("gates are the softmax of the active experts' scores", "[self_activation]") {
  auto a = select_topk(rows({{1.0f, 3.0f, 2.0f}}), 2);
  auto g = a.gates_of(0);
  REQUIRE(g.size() == 2);
  // Experts 1 (score 3) and 2 (score 2): softmax(3, 2).
  const double e1 = std::exp(3.0), e2 = std::exp(2.0);
  CHECK(g[0] == Approx(e1 / (e1 + e2)).epsilon(1e-6));
  CHECK(g[1] == Approx(e2 / (e1 + e2)).epsilon(1e-6));
  // Large scores do not overflow.
  float big[] = {1000.0f, 999.0f}, out[2];
  softmax_gates<float>(big, out);
  CHECK(out[0] + out[1] == Approx(1.0));
  CHECK(out[0] == Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("a bad k is rejected", "[self_activation]") {
  matrix s = matrix::Zero(2, 3);
  CHECK_THROWS_AS(select_topk(s, 0), std::invalid_argument);
  CHECK_THROWS_AS(select_topk(s, 4), std::invalid_argument);
  const float tau[] = {1.0f};
  CHECK_THROWS_AS(select_threshold<float>(s, tau), std::invalid_argument);
}

TEST_CASE("a selection bias changes who is chosen, never the gates", "[self_activation]") {
  auto scores = rows({{3.0f, 2.0f, 1.0f}});
  const float bias[] = {0.0f, 0.0f, 1.5f}; // expert 2 ranks at 2.5: above expert 1
  auto a = select_topk<float>(scores, 2, bias);
  CHECK(experts_of(a, 0) == std::vector<int>{0, 2});
  // Gates: the softmax of the clean scores 3 and 1.
  const double e0 = std::exp(3.0), e2 = std::exp(1.0);
  CHECK(a.gates_of(0)[0] == Approx(e0 / (e0 + e2)).epsilon(1e-6));
  CHECK(a.gates_of(0)[1] == Approx(e2 / (e0 + e2)).epsilon(1e-6));
  // A zero bias is plain top-k.
  const float zero[] = {0.0f, 0.0f, 0.0f};
  CHECK(select_topk<float>(scores, 2, zero) == select_topk(scores, 2));
  const float short_bias[] = {0.0f};
  CHECK_THROWS_AS(select_topk<float>(scores, 2, short_bias), std::invalid_argument);
}
