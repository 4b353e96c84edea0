#pragma once
// Evaluation of a model on labelled images with the reference forward: loss, accuracy and the
// MoE diagnostics.

#include "experts/train/diagnostics.hpp"
#include "experts/base/error.hpp"
#include "experts/data/fashion_mnist.hpp"
#include "experts/model/model.hpp"
#include "kernels/backend.hpp"

#include <cmath>

namespace eoe::experts {

struct eval_result {
  double loss = 0;     ///< mean cross-entropy (language model: nats per predicted token)
  double accuracy = 0; ///< share of examples whose argmax is the label (the next token)
  size_t examples = 0; ///< examples (language model: tokens predicted)
  std::vector<layer_stats> layers;
  double expert_flops = 0; ///< per example (token), summed over the expert layers as run
  /// A language model's evaluation (experts/train/lm_task.hpp): no classes, so the class-based
  /// statistics of `layers` do not apply.
  bool language_model = false;

  double perplexity() const noexcept {
    return std::exp(loss);
  }
  double bits_per_token() const noexcept {
    return loss / std::log(2.0);
  }
};

/// Runs the model over the data in batches of `batch`. Hash layers hash an example's index in
/// the data set, as in training.
expected<eval_result> evaluate(kernels::backend& be, const model& m, const labelled_images& data,
                               int batch = 1000);

} // namespace eoe::experts
