#pragma once
// Timing helpers the benchmarks share.

#include <algorithm>
#include <chrono>
#include <vector>

namespace eoe::bench {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// The p-quantile (0..1) of values (by copy).
inline double quantile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

/// Median seconds of `reps` calls of f after one warm-up call.
template <class F>
double median_seconds(int reps, F&& f) {
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = clock_type::now();
    f();
    t.push_back(seconds_since(start));
  }
  return quantile(t, 0.5);
}

} // namespace eoe::bench
