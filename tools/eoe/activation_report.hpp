#pragma once
// The human-readable view of a forward: per token, the experts active on every layer with
// their gates, and the predicted class. Shared by `eoe forward` and `eoe infer`.

#include "experts/model/forward.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace eoe::cli {

/// The class name of index `cls` (Fashion-MNIST names for a Fashion-MNIST model).
std::string class_name(const experts::model_config& c, Eigen::Index cls);

/// One line per layer describing the model's layers.
std::string describe_layers(const experts::model_config& c);

/// Per token: its label (when >= 0), the active experts and gates per layer, the prediction.
/// Experts are the model's indices ("e3"); with `layer_of` (per layer of r, its config layer)
/// they are a cluster's stable ids, named "L.E" as `eoe status` and /v1/topology list them.
std::string format_activations(const experts::model_config& c, const experts::forward_result& r,
                               const std::vector<int>& labels,
                               const std::vector<std::uint32_t>& layer_of = {});

} // namespace eoe::cli
