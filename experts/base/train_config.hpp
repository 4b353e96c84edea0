#pragma once
// The [train] table of a config file: how a model is trained.

#include <cstdint>

namespace eoe::experts {

class table_reader;

/// Training hyperparameters. Defaults are the ones the shipped configs start from.
struct train_config {
  int epochs = 10;
  int batch = 128;                 ///< examples per minibatch
  double lr = 2e-3;                ///< AdamW peak learning rate
  double warmup_fraction = 0.03;   ///< linear warm-up over this share of the steps
  double final_lr_fraction = 0.02; ///< cosine decay ends at lr * this
  double weight_decay = 1e-4;      ///< decoupled (AdamW), on weight matrices only
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double label_smoothing = 0.0;
  double dropout = 0.0;       ///< on the experts' hidden activations, training only
  double grad_clip = 1.0;     ///< rescale the gradient to at most this global L2 norm (0: off)
  double balance_coef = 0.01; ///< router layers: weight of the Switch balance loss
  double z_coef = 1e-3;       ///< router layers: weight of the router z-loss
  /// eoe threshold layers: the share of tokens each expert should fire on; tau follows the
  /// matching quantile of the expert's scores (an exponential moving average over batches).
  double threshold_rate = 0.25;
  /// eoe topk layers: after every batch each expert moves its selection bias by this much,
  /// up when it took less than its share 1/E of the assignments and down when it took more
  /// (auxiliary-loss-free balancing). 0: off, plain top-k.
  double balance_bias_rate = 0.0;
  /// eoe topk layers: weight of the Switch balance loss E sum_e f_e P_e on the softmax of the
  /// experts' self-scores (P_e its mean over tokens, f_e the share of assignments). Unlike the
  /// selection bias it reaches every expert's score on every token. 0: off.
  double score_balance_coef = 0.0;
  bool augment = false;      ///< random horizontal flips and shifts of images
  int augment_shift = 1;     ///< the largest shift, in pixels, along each axis
  int train_limit = 0;       ///< use only the first N training examples (0: all)
  int test_limit = 0;        ///< evaluate on the first N test examples (0: all)
  std::uint64_t seed = 1;    ///< shuffling, augmentation: the same seed repeats a run

  bool operator==(const train_config&) const = default;
};

/// Reads a [train] table into t; problems go to the reader's list.
void read_train_table(table_reader& r, train_config& t);

} // namespace eoe::experts
