#include "experts/nn/hash_routing.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace eoe::experts {

std::uint64_t stable_hash(std::uint64_t id, std::uint64_t seed) noexcept {
  std::uint64_t z = id + seed * 0x9e3779b97f4a7c15ull + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<std::int32_t> hash_experts(std::uint64_t id, int experts, int k,
                                       std::uint64_t seed) {
  if (k < 1 || k > experts)
    throw std::invalid_argument("hash_experts: k must be in 1..experts");
  std::vector<std::int32_t> picked;
  for (int j = 0; j < k; ++j) {
    auto e = static_cast<std::int32_t>(stable_hash(id, seed + j) % experts);
    while (std::find(picked.begin(), picked.end(), e) != picked.end())
      e = (e + 1) % experts; // linear probe to the next free expert
    picked.push_back(e);
  }
  std::sort(picked.begin(), picked.end());
  return picked;
}

activation_set route_hash(std::span<const std::uint64_t> ids, int experts, int k,
                          std::uint64_t seed) {
  activation_set out;
  const std::vector<float> gates(k, 1.0f / k);
  for (auto id : ids)
    out.push_token(hash_experts(id, experts, k, seed), gates);
  return out;
}

} // namespace eoe::experts
