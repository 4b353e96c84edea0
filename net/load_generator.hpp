#pragma once
// The built-in load generator: requests at a fixed concurrency against a cluster, every
// answer checked against the in-process reference of the epoch that served it (the model of
// that epoch, fetched from the coordinator). Counts ok, wrong, failed-with-error and lost
// (no answer at all), and the latencies.

#include "actors/plan.hpp"

#include <caf/actor_system.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace eoe::net {

struct load_options {
  size_t requests = 1000;
  size_t concurrency = 64;
  size_t tokens = 4;                ///< per request
  std::uint32_t deadline_ms = 10000;
  std::uint64_t seed = 1;           ///< request i's tokens come from seed and i
  double tolerance = 1e-5;          ///< max abs difference that still counts as right
  /// An answer that differs where the reference's top-k choice was decided by less than this
  /// (the k-th and (k+1)-th ranking scores of a token): counted as a tie, not as wrong. The
  /// mesh sums in other orders (a batch's GEMMs), so at a gap of rounding's size it may pick
  /// the other expert, as another float32 forward may.
  double tie_gap = 1e-5;
};

struct load_report {
  size_t ok = 0, wrong = 0, failed = 0, lost = 0;
  size_t ties = 0; ///< differ, but at a top-k near-tie of the reference (load_options::tie_gap)
  std::vector<std::string> tie_answers; ///< the first 16 of them
  double worst_difference = 0;
  std::map<std::string, size_t> errors;        ///< error text -> count
  std::vector<std::string> wrong_answers;      ///< the first 16 wrong ones: which, when, epoch
  std::map<std::uint64_t, size_t> per_epoch;   ///< answers per serving epoch
  std::vector<double> latency_ms;              ///< of the answered requests, in send order
  std::vector<double> sent_at_s;               ///< when each answered request was sent
  double seconds = 0;
};

/// Runs the load; `answered` counts answers and errors as they come (for a caller that changes
/// the cluster meanwhile). Blocks until every request is answered or timed out.
load_report run_load(caf::actor_system& sys, const actors::coordinator_actor& coordinator,
                     const load_options& opt, std::atomic<size_t>* answered = nullptr);

/// p-quantile (0..1) of values; 0 for none.
double quantile(std::vector<double> values, double p);

} // namespace eoe::net
