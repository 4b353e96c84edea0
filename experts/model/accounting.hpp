#pragma once
// Parameter and memory accounting of a model config: per expert, per layer, total, and the
// parameters a single token touches on its way through.

#include "experts/base/model_config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace eoe::experts {

/// Counts of one layer.
struct layer_account {
  layer_kind kind = layer_kind::eoe;
  int experts = 0;
  std::uint64_t per_expert = 0; ///< parameters of one expert
  std::uint64_t shared = 0;     ///< router, affinity, thresholds, selection and gate biases
  std::uint64_t total = 0;      ///< experts * per_expert + shared
  /// Parameters one token uses: every expert's scoring factor A (eoe; not factored: the
  /// scoring columns of W1), the router, and k experts' remaining weights. For threshold mode
  /// the count is an upper bound (all experts active) and `active_is_bound` is set.
  std::uint64_t active = 0;
  bool active_is_bound = false;
  int steps = 1;              ///< a recurrent layer reuses its weights `steps` times
  /// Per token, 2 per multiply-add: 2 * active * steps, and an unfactored EoE layer's active
  /// experts multiply their scoring columns a second time.
  std::uint64_t flops = 0;
};

/// Counts of a whole model.
struct model_account {
  std::uint64_t embedding = 0;
  std::vector<layer_account> layers;
  std::uint64_t head = 0;
  std::uint64_t total = 0;
  std::uint64_t active = 0;
  bool active_is_bound = false;
  std::uint64_t flops = 0; ///< per token, embedding and head included
};

model_account account(const model_config& c);

/// Bytes per parameter of the storage formats reported.
struct storage_format {
  const char* name;
  unsigned bytes;
};
inline constexpr storage_format storage_formats[] = {{"fp32", 4}, {"bf16", 2}, {"int8", 1}};

/// "90,177,536".
std::string thousands(std::uint64_t n);

/// "344.00 MiB" (binary units, two decimals).
std::string mebibytes(std::uint64_t bytes);

/// The table `eoe inspect` prints.
std::string format_account(const model_config& c, const model_account& a);

} // namespace eoe::experts
