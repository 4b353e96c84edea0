#pragma once
// The one training loop, over a task: shuffled or drawn minibatches, each cut into slices that
// run in parallel, the slices' gradients combined, thresholds calibrated and selection biases
// moved, AdamW with warm-up and cosine decay, and an evaluation after every epoch. What is
// trained on comes from a training_task: the classifier's labelled images
// (experts/train/classifier_task.hpp) or the language model's text
// (experts/train/lm_task.hpp). The same seed repeats a run exactly.

#include "experts/train/backprop.hpp"
#include "experts/train/evaluate.hpp"
#include "experts/base/train_config.hpp"

#include <functional>
#include <span>

namespace eoe::experts {

/// What one epoch did.
struct epoch_report {
  int epoch = 0;               ///< 1-based
  double train_loss = 0;       ///< mean over the epoch's batches (augmented data)
  double train_accuracy = 0;   ///< share of the epoch's predictions that were right
  double lr = 0;               ///< at the epoch's last step
  double seconds = 0;          ///< training time of this epoch (evaluation excluded)
  double elapsed = 0;          ///< training time since the start
  eval_result test;            ///< evaluation after the epoch
  std::vector<layer_stats> train_layers; ///< diagnostics of the epoch's training batches
};

struct train_hooks {
  std::function<void(long step, long total, double loss)> on_step;
  std::function<void(const epoch_report&)> on_epoch;
};

/// What a model trains on. The loop asks for each batch in turn, then for the loss of slices
/// of it from several threads at once (slice_loss is const and reads the current batch only).
class training_task {
public:
  virtual ~training_task() = default;

  /// Examples in an epoch (images; windows of text).
  virtual long examples() const = 0;
  /// Predictions an example makes (1; a window's positions): the accuracy's denominator.
  virtual long predictions_per_example() const = 0;
  /// The classes the training diagnostics count by (1: none).
  virtual int classes() const = 0;
  /// Before each epoch's first batch.
  virtual void start_epoch() {}
  /// Makes examples [begin, begin + rows) of the epoch the current batch.
  virtual void load_batch(long begin, long rows) = 0;
  /// Loss and (into grad) gradient of rows [begin, begin + rows) of the current batch.
  virtual step_result<float> slice_loss(const model& m, long begin, long rows,
                                        const loss_options& lo, model* grad) const = 0;
  /// The labels of the current batch's rows for the diagnostics (empty: every prediction
  /// counts as class 0).
  virtual std::span<const std::uint8_t> labels(long begin, long rows) const = 0;
  /// The evaluation after an epoch.
  virtual expected<eval_result> evaluate(const model& m) const = 0;
};

/// Trains m in place on the task, evaluating it after every epoch.
expected<void> run_training(model& m, const train_config& t, training_task& task,
                            const train_hooks& hooks = {});

} // namespace eoe::experts
