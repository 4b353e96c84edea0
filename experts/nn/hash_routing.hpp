#pragma once
// Hash routing baseline (Roller et al., "Hash Layers"): a stable hash of a token's id picks
// its experts; nothing is learned, and the same id goes to the same experts on every machine.

#include "experts/nn/activation_set.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// splitmix64 of id mixed with seed: stable across platforms, compilers and runs.
std::uint64_t stable_hash(std::uint64_t id, std::uint64_t seed) noexcept;

/// The k distinct experts of one id, ascending.
std::vector<std::int32_t> hash_experts(std::uint64_t id, int experts, int k,
                                       std::uint64_t seed);

/// ids (T) -> per token k distinct experts of `experts`, each gated 1/k.
activation_set route_hash(std::span<const std::uint64_t> ids, int experts, int k,
                          std::uint64_t seed);

} // namespace eoe::experts
