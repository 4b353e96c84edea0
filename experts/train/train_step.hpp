#pragma once
// What every training loop does around a step, whatever it trains (the classifier's
// experts/train/classifier_task.hpp, the language model's experts/train/lm_task.hpp): combining the gradients
// of batch slices, calibrating thresholds, balancing the top-k load by selection biases, and
// keeping Eigen single-threaded while slices run on their own threads.

#include "experts/train/adamw.hpp"
#include "experts/train/expert_layer.hpp"
#include "experts/model/model.hpp"
#include "experts/base/train_config.hpp"

#include <span>
#include <vector>

namespace eoe::experts {

/// Slices of a batch run in parallel, one thread each. The slicing depends only on the
/// batch, so a run gives the same numbers on any machine.
inline constexpr int batch_slices = 2;

/// grad = sum over slices s of (rows[s] / total) * slices[s], tensor by tensor in parallel,
/// in slice order (slices with 0 rows skipped). Returns the global L2 norm of grad.
double combine_gradients(model& grad, std::span<const model* const> slices,
                         std::span<const long> rows, long total);

/// Moves every threshold layer's tau towards the score quantile at which each expert fires on
/// `rate` of the tokens (all steps of a recurrent layer pooled). The first batch sets it.
void calibrate_thresholds(model& m, const std::vector<layer_trace<float>>& traces, double rate,
                          bool first);

/// Moves every topk layer's selection biases towards an even load: +rate for an expert that
/// took less than 1/E of the layer's assignments in this batch, -rate for one that took more.
void balance_selection(model& m, const std::vector<layer_trace<float>>& traces, double rate);

/// The update that closes a step: thresholds calibrated and selection biases moved from the
/// batch's traces, then the optimiser's step at the schedule's rate for `step` of `total`,
/// the gradient scaled to the clipping norm by its global `norm`. Returns that rate.
double finish_step(model& m, const model& grad, double norm,
                   const std::vector<layer_trace<float>>& traces, const train_config& t,
                   adamw& opt, long step, long total);

/// Eigen's GEMMs cut their inner dimension into blocks sized from the CPU's caches, and the
/// blocks' order of summation is the rounding: this fixes the cache sizes it plans with (those
/// of the machine bench/RESULTS.md was measured on), so that training sums in the same order
/// on every machine. Process-wide; the training loop calls it.
void fix_gemm_blocking();

/// Eigen runs single-threaded while this lives (the slices are the parallelism), and gets its
/// thread count back after; suspend() and resume() let an evaluation in between use them all.
class eigen_single_threaded {
public:
  eigen_single_threaded();
  ~eigen_single_threaded();
  eigen_single_threaded(const eigen_single_threaded&) = delete;
  eigen_single_threaded& operator=(const eigen_single_threaded&) = delete;

  void suspend() const;
  void resume() const;

private:
  int threads_;
};

} // namespace eoe::experts
