// Parameter and memory accounting against hand-computed figures.

#include "experts/model/accounting.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>

using namespace eoe::experts;

TEST_CASE("the LLaMA-7B FFN block: 4096 -> 11008 -> 4096 without bias", "[accounting]") {
  const char* src = std::getenv("EOE_SOURCE_DIR");
  auto c = load_model_config(std::string{src ? src : "."} + "/configs/llama7b_ffn.toml");
  REQUIRE(c.has_value());
  auto a = account(*c);
  // Two matrices of 4096 x 11008.
  CHECK(a.total == 2ull * 4096 * 11008);
  CHECK(a.total == 90'177'536ull);
  CHECK(thousands(a.total) == "90,177,536");
  CHECK(mebibytes(a.total * 4) == "344.00 MiB");
  CHECK(mebibytes(a.total * 2) == "172.00 MiB");
  CHECK(a.active == a.total);
  auto table = format_account(*c, a);
  CHECK_THAT(table, Catch::Contains("90,177,536") && Catch::Contains("344.00 MiB"));
}

TEST_CASE("EoE, router, hash and affinity counts", "[accounting]") {
  auto c = parse_model_config(R"(
model = { input_dim = 10, dim = 8, classes = 3 }
layer = [
  { kind = "eoe", experts = 4, hidden = 16, rank = 2, k = 2 },
  { kind = "router", experts = 3, hidden = 5, k = 1, bias = false },
  { kind = "eoe", experts = 2, hidden = 4, rank = 8, mode = "threshold", tau = 1, affinity = true },
  { kind = "hash", experts = 5, hidden = 6, k = 2 },
]
)",
                              "t");
  REQUIRE(c.has_value());
  auto a = account(*c);
  CHECK(a.embedding == 10 * 8 + 8);
  CHECK(a.head == 8 * 3 + 3);
  // eoe: A 8x2 + B 2x16 + b1 16 + W2 16x8 + b2 8 = 16 + 32 + 16 + 128 + 8 = 200.
  CHECK(a.layers[0].per_expert == 200);
  CHECK(a.layers[0].shared == 8); // the selection and gate biases
  CHECK(a.layers[0].total == 808);
  // Active: every expert scores (4 x 16) + two experts' rest (2 x 184) + the biases.
  CHECK(a.layers[0].active == 4 * 16 + 2 * 184 + 8);
  // router: W1 8x5 + W2 5x8 = 80 per expert; router 8x3 = 24.
  CHECK(a.layers[1].per_expert == 80);
  CHECK(a.layers[1].shared == 24);
  CHECK(a.layers[1].active == 80 + 24);
  // threshold eoe with affinity: per expert 8*8 + 8*4 + 4 + 4*8 + 8 = 140; affinity 3x2,
  // tau 2, gate bias 2.
  CHECK(a.layers[2].per_expert == 140);
  CHECK(a.layers[2].shared == 10);
  CHECK(a.layers[2].active_is_bound);
  CHECK(a.layers[2].active == 2 * 140 + 10);
  // hash: 8*6 + 6 + 6*8 + 8 = 110 per expert, k = 2.
  CHECK(a.layers[3].per_expert == 110);
  CHECK(a.layers[3].active == 220);
  CHECK(a.total == 88 + 27 + 808 + 264 + 290 + 550);
  CHECK(a.active_is_bound);
}

TEST_CASE("an EoE expert that scores on part of its first projection", "[accounting]") {
  auto c = parse_model_config(R"(
model = { dim = 8 }
layer = [
  { kind = "eoe", experts = 4, hidden = 16, score_columns = 2, k = 2 },
  { kind = "eoe", experts = 4, hidden = 16, rank = 4, score_columns = 2, k = 2 },
]
)",
                              "t");
  REQUIRE(c.has_value());
  auto a = account(*c);
  // Not factored: W1 8x16 + b1 16 + W2 16x8 + b2 8 = 280 per expert.
  CHECK(a.layers[0].per_expert == 280);
  CHECK(a.layers[0].total == 4 * 280 + 8);
  // Every expert touches W1's first 2 columns (8 x 2); two experts the rest of theirs.
  CHECK(a.layers[0].active == 4 * 16 + 2 * (280 - 16) + 8);
  // FLOPs: the two active experts multiply their scoring columns again.
  CHECK(a.layers[0].flops == 2 * (4 * 16 + 2 * 280 + 8));
  // Factored: every expert still computes all of u = x A (8 x 4); the score reads 2 columns.
  CHECK(a.layers[1].per_expert == 32 + 4 * 16 + 16 + 128 + 8);
  CHECK(a.layers[1].active == 4 * 32 + 2 * (4 * 16 + 16 + 128 + 8) + 8);
  CHECK(a.layers[1].flops == 2 * a.layers[1].active);
  const auto text = format_account(*c, a);
  CHECK(text.find("8 -> 16 -> 8 (scored on 2 of W1's columns), k=2") != std::string::npos);
  CHECK(text.find("(A rank 4) (scored on 2 of u's columns), k=2") != std::string::npos);
}

TEST_CASE("number formatting", "[accounting]") {
  CHECK(thousands(0) == "0");
  CHECK(thousands(999) == "999");
  CHECK(thousands(1000) == "1,000");
  CHECK(thousands(1234567) == "1,234,567");
  CHECK(mebibytes(1024 * 1024) == "1.00 MiB");
  CHECK(mebibytes(360'448'000) == "343.75 MiB");
}
