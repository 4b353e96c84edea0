// MoE diagnostics against hand-computed values.

#include "experts/train/diagnostics.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace eoe::experts;

namespace {

model_config two_experts() {
  auto c = parse_model_config(R"(
model = { dim = 4, classes = 2 }
layer = [
  { kind = "eoe", experts = 2, hidden = 3, rank = 2, k = 1 },
]
)",
                              "t");
  REQUIRE(c.has_value());
  return *c;
}

activation_set one_each(std::vector<int> experts) {
  activation_set a;
  for (int e : experts) {
    const std::int32_t es[] = {e};
    const float gs[] = {1.0f};
    a.push_token(es, gs);
  }
  return a;
}

} // namespace

TEST_CASE("perfect specialisation: zero conditional entropy, one bit of information",
          "[diagnostics]") {
  stats_accumulator acc{two_experts(), 2};
  auto a = one_each({0, 0, 1, 1});
  const activation_set* layers[] = {&a};
  const std::uint8_t labels[] = {0, 0, 1, 1};
  acc.add<float>(layers, labels);
  auto s = acc.finish();
  REQUIRE(s.size() == 1);
  CHECK(s[0].share == std::vector<double>{0.5, 0.5});
  CHECK(s[0].load_cv == 0.0);
  CHECK(s[0].conditional_entropy == 0.0);
  CHECK(s[0].mutual_information == Approx(1.0));
  CHECK(s[0].max_entropy == 1.0);
  CHECK(s[0].mean_active == 1.0);
  // FLOPs: 2 experts score (2 * 2 * 4 * 2) + one active expert 2 * (2 * 3 + 3 * 4).
  CHECK(s[0].expert_flops == Approx(32 + 36));
}

TEST_CASE("no specialisation and an unbalanced load", "[diagnostics]") {
  stats_accumulator acc{two_experts(), 2};
  // Class 0 and class 1 both go 3:1 to expert 0: H(E|C) = H(E) = H(3/4), I = 0.
  auto a = one_each({0, 0, 0, 1, 0, 0, 0, 1});
  const activation_set* layers[] = {&a};
  const std::uint8_t labels[] = {0, 0, 0, 0, 1, 1, 1, 1};
  acc.add<float>(layers, labels);
  auto s = acc.finish()[0];
  const double h = -(0.75 * std::log2(0.75) + 0.25 * std::log2(0.25));
  CHECK(s.conditional_entropy == Approx(h));
  CHECK(s.mutual_information == Approx(0.0).margin(1e-12));
  // Loads 6 and 2: mean 4, std 2, CV 0.5.
  CHECK(s.load_cv == Approx(0.5));
  CHECK(s.share == std::vector<double>{0.75, 0.25});
  CHECK(s.class_expert[1] == std::vector<double>{3, 1});
}

TEST_CASE("pass-through tokens are counted", "[diagnostics]") {
  stats_accumulator acc{two_experts(), 2};
  activation_set a;
  a.push_token({}, {});
  const std::int32_t both[] = {0, 1};
  const float g[] = {0.5f, 0.5f};
  a.push_token(both, g);
  const activation_set* layers[] = {&a};
  const std::uint8_t labels[] = {0, 1};
  acc.add<float>(layers, labels);
  auto s = acc.finish()[0];
  CHECK(s.passthrough == 0.5);
  CHECK(s.mean_active == 1.0);
}
