#pragma once
// The training loop: shuffled minibatches, optional augmentation, AdamW with warm-up and cosine
// decay, threshold calibration for threshold layers, and an evaluation after every epoch.
// The same seed repeats a run exactly.

#include "experts/evaluate.hpp"
#include "experts/train_config.hpp"

#include <functional>

namespace eoe::experts {

/// What one epoch did.
struct epoch_report {
  int epoch = 0;               ///< 1-based
  double train_loss = 0;       ///< mean over the epoch's batches (augmented data)
  double train_accuracy = 0;
  double lr = 0;               ///< at the epoch's last step
  double seconds = 0;          ///< training time of this epoch (evaluation excluded)
  double elapsed = 0;          ///< training time since the start
  eval_result test;            ///< evaluation on the test data after the epoch
  std::vector<layer_stats> train_layers; ///< diagnostics of the epoch's training batches
};

struct train_hooks {
  std::function<void(long step, long total, double loss)> on_step;
  std::function<void(const epoch_report&)> on_epoch;
};

/// Trains m in place on `train`, evaluating on `test` after every epoch.
expected<void> train_model(model& m, const train_config& t, const labelled_images& train,
                           const labelled_images& test, const train_hooks& hooks = {});

} // namespace eoe::experts
