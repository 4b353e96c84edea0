#pragma once
// A small parallel loop over independent items (tensors of a model, slices of a batch) on
// plain threads. Each item is handled by exactly one thread, so results do not depend on the
// number of threads.

#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace eoe::experts {

/// Threads a parallel loop uses: the machine's hardware threads, at least 1.
inline unsigned loop_threads() noexcept {
  return std::max(1u, std::thread::hardware_concurrency());
}

/// Calls f(i) for every i in [0, n), item i on thread i % threads.
template <class F>
void parallel_for(size_t n, F&& f, unsigned threads = loop_threads()) {
  threads = static_cast<unsigned>(std::min<size_t>(threads, n));
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i)
      f(i);
    return;
  }
  auto run = [&](unsigned t) {
    for (size_t i = t; i < n; i += threads)
      f(i);
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t)
    pool.emplace_back(run, t);
  run(0);
  for (auto& th : pool)
    th.join();
}

} // namespace eoe::experts
