// actors/deadline_set: which timers an actor arms for many deadlines, and which keys fall due
// when one fires, against the deadlines as given.
#include "actors/deadline_message.hpp"
#include "actors/deadline_set.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <set>

using eoe::actors::deadline_set;
using namespace std::chrono_literals;
using set_t = deadline_set<std::uint64_t>;

TEST_CASE("one timer for many deadlines; keys fall due in deadline order", "[deadline_set]") {
  set_t s{10ms};
  const auto t0 = set_t::time_point{} + 1h;
  // The first deadline arms a timer; later ones are covered by it.
  auto arm = s.add(1, t0 + 100ms);
  REQUIRE(arm);
  CHECK(*arm == t0 + 100ms);
  CHECK_FALSE(s.add(2, t0 + 150ms));
  CHECK_FALSE(s.add(3, t0 + 101ms));
  // An earlier one arms its own.
  arm = s.add(4, t0 + 50ms);
  REQUIRE(arm);
  CHECK(*arm == t0 + 50ms);
  // A key once only: the first deadline stays.
  CHECK_FALSE(s.add(4, t0 + 1ms));
  CHECK(s.size() == 4);

  std::optional<set_t::time_point> rearm;
  auto due = s.fire(t0 + 50ms, t0 + 50ms, rearm);
  CHECK(due == std::vector<std::uint64_t>{4});
  CHECK_FALSE(rearm); // the timer for 100 ms is still armed
  due = s.fire(t0 + 100ms, t0 + 102ms, rearm);
  CHECK(due == std::vector<std::uint64_t>{1, 3});
  REQUIRE(rearm);
  CHECK(*rearm == t0 + 150ms);
  CHECK_FALSE(s.contains(1));
  CHECK(s.contains(2));
  due = s.fire(t0 + 150ms, t0 + 150ms, rearm);
  CHECK(due == std::vector<std::uint64_t>{2});
  CHECK_FALSE(rearm);
  CHECK(s.size() == 0);
  // Empty: the next deadline arms again.
  CHECK(s.add(5, t0 + 1s));
}

TEST_CASE("deadlines closer than the slack share a timer, at most the slack late",
          "[deadline_set]") {
  set_t s{10ms};
  const auto t0 = set_t::time_point{} + 1h;
  REQUIRE(s.add(1, t0));
  for (std::uint64_t k = 2; k <= 100; ++k)
    CHECK_FALSE(s.add(k, t0 + std::chrono::milliseconds(k))); // 2..100 ms
  std::optional<set_t::time_point> rearm;
  auto now = t0;
  auto armed = t0;
  std::set<std::uint64_t> seen;
  int timers = 0;
  for (;;) {
    now = armed; // each timer fires when armed
    ++timers;
    for (auto k : s.fire(armed, now, rearm)) {
      const auto deadline = k == 1 ? t0 : t0 + std::chrono::milliseconds(k);
      CHECK(deadline <= now);
      CHECK(now - deadline <= 10ms);
      CHECK(seen.insert(k).second);
    }
    if (!rearm)
      break;
    armed = *rearm;
  }
  CHECK(seen.size() == 100);
  CHECK(timers <= 11); // 0, 10, 20, ... 100 ms
}

TEST_CASE("random deadlines: every key falls due once, never early, and never more than the "
          "slack late when its timer fires on time",
          "[deadline_set]") {
  std::mt19937_64 rng{7};
  set_t s{5ms};
  const auto t0 = set_t::time_point{} + 1h;
  std::map<std::uint64_t, set_t::time_point> want;
  std::multiset<set_t::time_point> timers; // armed, not fired
  auto now = t0;
  std::uint64_t next_key = 0;
  size_t fired_keys = 0;
  for (int round = 0; round < 2000; ++round) {
    if (rng() % 3 != 0 || timers.empty()) {
      const auto at = now + std::chrono::microseconds(rng() % 200'000);
      const auto key = next_key++;
      want[key] = at;
      if (auto arm = s.add(key, at))
        timers.insert(*arm);
      continue;
    }
    const auto armed = *timers.begin();
    timers.erase(timers.begin());
    now = std::max(now, armed);
    std::optional<set_t::time_point> rearm;
    for (auto k : s.fire(armed, now, rearm)) {
      REQUIRE(want.contains(k));
      CHECK(want[k] <= now);
      want.erase(k);
      ++fired_keys;
    }
    if (rearm)
      timers.insert(*rearm);
  }
  // Whatever is left has a timer that will fire for it.
  while (!timers.empty()) {
    const auto armed = *timers.begin();
    timers.erase(timers.begin());
    now = std::max(now, armed);
    std::optional<set_t::time_point> rearm;
    for (auto k : s.fire(armed, now, rearm)) {
      CHECK(want[k] <= now);
      CHECK(now - want[k] <= 5ms + 200ms); // late only behind the slack or a timer held back
      want.erase(k);
      ++fired_keys;
    }
    if (rearm)
      timers.insert(*rearm);
  }
  CHECK(want.empty());
  CHECK(fired_keys == next_key);
}

TEST_CASE("time points round-trip through a deadline message's ticks", "[deadline_set]") {
  const auto t = set_t::clock::now();
  CHECK(eoe::actors::deadline_message_time(eoe::actors::deadline_message_ticks(t)) == t);
}

TEST_CASE("a deadline met and erased never falls due; its timer finds nothing", "[deadline_set]") {
  set_t s{5ms};
  const auto t0 = set_t::time_point{} + 1h;
  REQUIRE(s.add(1, t0 + 10ms));
  CHECK_FALSE(s.add(2, t0 + 10ms)); // the same time: both kept
  CHECK_FALSE(s.add(3, t0 + 20ms));
  s.erase(1);
  s.erase(9); // not there: nothing happens
  CHECK_FALSE(s.contains(1));
  CHECK(s.size() == 2);
  std::optional<set_t::time_point> rearm;
  CHECK(s.fire(t0 + 10ms, t0 + 10ms, rearm) == std::vector<std::uint64_t>{2});
  REQUIRE(rearm);
  s.erase(3);
  CHECK(s.fire(*rearm, *rearm, rearm).empty());
  CHECK_FALSE(rearm);
  // Erased, a key may come back with a new deadline.
  CHECK(s.add(1, t0 + 1s));
  CHECK(s.contains(1));
}
