#include "experts/base/blocks.hpp"

namespace eoe::experts {

std::vector<block> blocks_of(const model_config& c) {
  std::vector<block> out;
  std::uint32_t unrolled = 0;
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto layer = static_cast<std::uint32_t>(l);
    if (c.layers[l].kind == layer_kind::attention) { // never recurrent (the config refuses steps)
      out.push_back({layer, unrolled, true});
      continue;
    }
    for (int step = 0; step < c.layers[l].steps; ++step)
      out.push_back({layer, unrolled++, false});
  }
  return out;
}

} // namespace eoe::experts
