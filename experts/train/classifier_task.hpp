#pragma once
// Training a classifier on labelled images: the training loop of
// experts/train/training_loop.hpp over a task that shuffles the examples every epoch, augments
// images (random shifts) when asked, and evaluates on the test data after every epoch.

#include "experts/train/training_loop.hpp"

namespace eoe::experts {

/// Trains m in place on `train`, evaluating on `test` after every epoch.
expected<void> train_model(model& m, const train_config& t, const labelled_images& train,
                           const labelled_images& test, const train_hooks& hooks = {});

} // namespace eoe::experts
