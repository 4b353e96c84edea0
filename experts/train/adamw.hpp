#pragma once
// AdamW (Loshchilov & Hutter, decoupled weight decay) over every parameter of a model, and the
// learning-rate schedule the trainer follows.

#include "experts/model/model.hpp"
#include "experts/base/train_config.hpp"

#include <string>

namespace eoe::experts {

/// Whether a parameter gets weight decay: weight matrices (attention projections and token
/// embeddings too) do; biases, RMSNorm gains and affinities (which start at 1) and thresholds
/// (calibrated, not learned) do not.
bool decays(const std::string& name) noexcept;

/// Whether the optimiser updates a parameter at all: everything but thresholds and selection
/// biases (both are calibrated from the load, not learned from the loss).
bool learned(const std::string& name) noexcept;

/// Linear warm-up to lr over warmup_fraction of the steps, then cosine decay to
/// lr * final_lr_fraction at the last step.
double learning_rate(const train_config& t, long step, long total_steps) noexcept;

/// The factor that scales a gradient of global L2 norm `norm` down to `max_norm` (1 when it is
/// not larger, or max_norm is 0: no clipping).
double clip_scale(double norm, double max_norm) noexcept;

class adamw {
public:
  adamw(const model_config& c, const train_config& t);

  /// One update of m by its gradient g (multiplied by grad_scale) at learning rate lr.
  /// Tensors are updated in parallel; the result does not depend on the thread count.
  void step(model& m, const model& g, double lr, double grad_scale = 1.0);

private:
  train_config cfg_;
  model first_;  ///< running mean of the gradients
  model second_; ///< running mean of their squares
  long t_ = 0;
};

} // namespace eoe::experts
