#pragma once
// The JSON shapes of training and evaluation metrics (one object per epoch, JSON lines).

#include "experts/trainer.hpp"

#include <nlohmann/json.hpp>

namespace eoe::cli {

nlohmann::json to_json(const experts::layer_stats& s);
nlohmann::json to_json(const experts::eval_result& r);
nlohmann::json to_json(const experts::epoch_report& r);

} // namespace eoe::cli
