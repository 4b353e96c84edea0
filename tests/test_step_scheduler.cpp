// The step scheduler as plain code: which tokens of which feeds each step takes (one of every
// waiting feed first, then prefill chunks within the budget, oldest first), that a feed runs
// in order and in one step at a time, that epochs and alone feeds are kept apart, and that a
// dropped feed leaves wherever it is.
#include "actors/step_scheduler.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace eoe::actors;

namespace {

/// feed -> (first, count) of a step.
std::map<std::uint64_t, std::pair<std::uint32_t, std::uint32_t>> slices_of(const step_plan& s) {
  std::map<std::uint64_t, std::pair<std::uint32_t, std::uint32_t>> out;
  std::uint32_t row = 0;
  for (const auto& x : s.slices) {
    CHECK(x.row == row); // rows in order, no gaps
    row += x.count;
    out[x.feed] = {x.first, x.count};
  }
  CHECK(row == s.tokens);
  return out;
}

} // namespace

TEST_CASE("a step takes a token of every waiting feed, then prefill chunks within the budget",
          "[scheduler]") {
  step_scheduler s{8, 1};
  s.add(1, 3, 20, false); // a prompt of 20 tokens
  s.add(2, 3, 1, false);  // decode steps
  s.add(3, 3, 1, false);
  auto a = s.next();
  REQUIRE(a.has_value());
  CHECK(a->epoch == 3);
  CHECK_FALSE(a->alone);
  // One token each (3), then the 5 left of the budget to the prompt, the oldest.
  using p = std::pair<std::uint32_t, std::uint32_t>;
  CHECK(slices_of(*a) == std::map<std::uint64_t, p>{{1, {0, 6}}, {2, {0, 1}}, {3, {0, 1}}});
  CHECK_FALSE(s.next().has_value()); // one step in flight at most
  s.add(4, 3, 1, false);              // joins while the step runs
  CHECK(s.waiting() == 1);
  const auto done = s.finished(*a);
  CHECK(done == std::vector<std::uint64_t>{2, 3});
  CHECK(s.contains(1));
  CHECK_FALSE(s.contains(2));
  auto b = s.next();
  REQUIRE(b.has_value());
  // The prompt goes on where it stopped; the newcomer gets its token.
  CHECK(slices_of(*b) == std::map<std::uint64_t, p>{{1, {6, 7}}, {4, {0, 1}}});
  CHECK(s.finished(*b) == std::vector<std::uint64_t>{4});
  auto c = s.next();
  REQUIRE(c.has_value());
  CHECK(slices_of(*c) == std::map<std::uint64_t, p>{{1, {13, 7}}});
  CHECK(s.finished(*c) == std::vector<std::uint64_t>{1});
  CHECK_FALSE(s.next().has_value());
  CHECK(s.in_flight() == 0);
}

TEST_CASE("no feed starves: past the budget, the oldest feeds go first and the rest next",
          "[scheduler]") {
  step_scheduler s{4, 2};
  for (std::uint64_t f = 1; f <= 6; ++f)
    s.add(f, 1, 1, false);
  auto a = s.next();
  REQUIRE(a.has_value());
  CHECK(a->tokens == 4);
  CHECK(a->slices.front().feed == 1);
  CHECK(a->slices.back().feed == 4);
  // A second step in flight takes the feeds the first did not: a feed is never in two.
  auto b = s.next();
  REQUIRE(b.has_value());
  REQUIRE(b->slices.size() == 2);
  CHECK(b->slices[0].feed == 5);
  CHECK(b->slices[1].feed == 6);
  CHECK_FALSE(s.next().has_value());
  CHECK(s.finished(*b).size() == 2);
  CHECK(s.finished(*a).size() == 4);
  CHECK(s.waiting() == 0);
}

TEST_CASE("feeds of different epochs and alone feeds never share a step", "[scheduler]") {
  step_scheduler s{100, 4};
  s.add(1, 5, 2, false);
  s.add(2, 6, 2, false);  // admitted after an epoch change
  s.add(3, 5, 30, true);  // traced: whole, in a step of its own
  s.add(4, 5, 2, false);
  auto a = s.next();
  REQUIRE(a.has_value());
  CHECK(a->epoch == 5);
  REQUIRE(a->slices.size() == 2);
  CHECK(a->slices[0].feed == 1);
  CHECK(a->slices[1].feed == 4);
  auto b = s.next();
  REQUIRE(b.has_value());
  CHECK(b->epoch == 6);
  REQUIRE(b->slices.size() == 1);
  CHECK(b->slices[0].feed == 2);
  auto c = s.next();
  REQUIRE(c.has_value());
  CHECK(c->alone);
  REQUIRE(c->slices.size() == 1);
  CHECK(c->slices[0].count == 30); // over the budget: an alone feed is not chunked
  CHECK_FALSE(s.next().has_value());
}

TEST_CASE("a dropped feed leaves at once; its running step finishes the others", "[scheduler]") {
  step_scheduler s{10, 1};
  s.add(1, 1, 5, false);
  s.add(2, 1, 1, false);
  s.add(3, 1, 1, false);
  auto a = s.next();
  REQUIRE(a.has_value());
  s.drop(1); // it failed while its step ran
  s.drop(3);
  CHECK_FALSE(s.contains(1));
  CHECK(s.finished(*a) == std::vector<std::uint64_t>{2});
  CHECK_FALSE(s.next().has_value());
  CHECK(s.in_flight() == 0);
  // Waiting feeds can be dropped too; the ids are free again.
  s.add(1, 1, 3, false);
  s.drop(1);
  CHECK(s.waiting() == 0);
  CHECK_THROWS_WITH(s.add(7, 1, 0, false), Catch::Contains("feed 7 has no tokens"));
  s.add(7, 1, 1, false);
  CHECK_THROWS_WITH(s.add(7, 1, 1, false), Catch::Contains("feed 7 is already in"));
}
