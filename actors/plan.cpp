#include "actors/plan.hpp"

#include <algorithm>

namespace eoe::actors {

std::vector<std::uint32_t> mesh_plan::nodes_of_layer(size_t l) const {
  std::vector<std::uint32_t> out(placement.at(l).begin(), placement.at(l).end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

} // namespace eoe::actors
