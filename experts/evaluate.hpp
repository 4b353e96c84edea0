#pragma once
// Evaluation of a model on labelled images with the reference forward: loss, accuracy and the
// MoE diagnostics.

#include "experts/diagnostics.hpp"
#include "experts/error.hpp"
#include "experts/fashion_mnist.hpp"
#include "experts/model.hpp"
#include "kernels/backend.hpp"

namespace eoe::experts {

struct eval_result {
  double loss = 0;     ///< mean cross-entropy
  double accuracy = 0; ///< share of examples whose argmax is the label
  size_t examples = 0;
  std::vector<layer_stats> layers;
  double expert_flops = 0; ///< per example, summed over the layers as run
};

/// Runs the model over the data in batches of `batch`. Hash layers hash an example's index in
/// the data set, as in training.
expected<eval_result> evaluate(kernels::backend& be, const model& m, const labelled_images& data,
                               int batch = 1000);

} // namespace eoe::experts
