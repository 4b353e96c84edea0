// experts/base/parallel: every item runs exactly once, on whichever thread, whether loops run
// alone, inside one another or from several threads at once; a thrown exception reaches the
// caller after every item has run.
#include "experts/base/parallel.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace eoe::experts;

TEST_CASE("parallel_for runs every item exactly once, whatever the thread count", "[parallel]") {
  for (size_t n : {0, 1, 2, 3, 17, 1000})
    for (unsigned threads : {1u, 2u, 3u, 8u}) {
      INFO(n << " items on " << threads << " threads");
      std::vector<std::atomic<int>> runs(n);
      std::mutex mu;
      std::set<std::thread::id> ids;
      parallel_for(
        n,
        [&](size_t i) {
          runs[i]++;
          const std::lock_guard lock{mu};
          ids.insert(std::this_thread::get_id());
        },
        threads);
      for (size_t i = 0; i < n; ++i)
        REQUIRE(runs[i] == 1);
      CHECK(ids.size() <= std::max<size_t>(1, std::min<size_t>(n, loop_threads())));
      if (threads == 1)
        CHECK(ids.size() <= 1);
    }
}

TEST_CASE("parallel_for inside parallel_for and from several threads at once", "[parallel]") {
  constexpr size_t outer = 8, inner = 50, callers = 4;
  std::vector<std::atomic<int>> runs(callers * outer * inner);
  std::vector<std::thread> ts;
  for (size_t c = 0; c < callers; ++c)
    ts.emplace_back([&, c] {
      for (int round = 0; round < 20; ++round)
        parallel_for(outer, [&](size_t o) {
          parallel_for(inner, [&](size_t i) { runs[(c * outer + o) * inner + i]++; });
        });
    });
  for (auto& t : ts)
    t.join();
  for (auto& r : runs)
    REQUIRE(r == 20);
}

TEST_CASE("an exception thrown by an item reaches the caller once every item has run",
          "[parallel]") {
  std::vector<std::atomic<int>> runs(100);
  CHECK_THROWS_WITH(parallel_for(100,
                                 [&](size_t i) {
                                   runs[i]++;
                                   if (i % 10 == 3)
                                     throw std::runtime_error("item " + std::to_string(i));
                                 }),
                    Catch::Matches("item [0-9]*3"));
  for (auto& r : runs)
    REQUIRE(r == 1);
  // The pool goes on after it.
  std::atomic<size_t> sum{0};
  parallel_for(10, [&](size_t i) { sum += i; });
  CHECK(sum == 45);
}
