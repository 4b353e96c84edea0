#pragma once
// The scheduling policies an eoe actor system runs with (a CAF setting, named without CAF so
// that configuration code can hold one).

#include <cstdint>

namespace eoe::actors {

/// How an actor system's worker threads find work.
enum class scheduler_policy : std::uint8_t {
  /// One queue that idle workers sleep on until a job arrives (CAF's work sharing). The
  /// default: measured on 2 cores, the 3-process mesh at 1.26-1.50x the reference against
  /// 1.98-2.11x with stealing, and half the per-hop latency; idle stealers poll, and the
  /// polling takes the cores the experts' GEMMs need.
  sharing,
  /// A queue per worker, idle workers polling and stealing (CAF's default).
  stealing,
};

} // namespace eoe::actors
