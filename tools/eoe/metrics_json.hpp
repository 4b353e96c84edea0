#pragma once
// The JSON shapes of training and evaluation metrics (one object per epoch, JSON lines). A
// language model's evaluation is "validation" (loss in nats per byte, perplexity, bits per
// byte, next-byte accuracy), without the class-based statistics.

#include "experts/train/classifier_task.hpp"

#include <nlohmann/json.hpp>

namespace eoe::cli {

/// classes: with the class-based statistics (a classifier's; a language model has none).
nlohmann::json to_json(const experts::layer_stats& s, bool classes = true);
nlohmann::json to_json(const experts::eval_result& r);
nlohmann::json to_json(const experts::epoch_report& r);

} // namespace eoe::cli
