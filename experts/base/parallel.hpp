#pragma once
// A small parallel loop over independent items (tensors of a model, slices of a batch, a
// batch's shard calls) on a pool of threads kept for the process. Each item is handled by
// exactly one thread, so results do not depend on the number of threads.

#include <cstddef>
#include <functional>

namespace eoe::experts {

/// Threads a parallel loop uses: the machine's hardware threads, at least 1 (read once).
unsigned loop_threads() noexcept;

/// Calls f(i) for every i in [0, n) on up to `threads` threads: the caller's and the pool's
/// (the machine's hardware threads less one, started at the first loop that wants them).
/// Returns when every call has returned; the first exception a call threw is rethrown then.
/// Loops may run at once and inside one another: a caller works its own items.
void parallel_for(size_t n, const std::function<void(size_t)>& f,
                  unsigned threads = loop_threads());

} // namespace eoe::experts
