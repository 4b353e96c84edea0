#pragma once
// A whole mesh inside one actor system: node agents for `nodes` named nodes, round-robin
// placement, the coordinator and composer on the first. For tests, benchmarks and the
// single-process cluster; real clusters start through net/ (one process per node).

#include "actors/coordinator_actor.hpp"

#include <caf/actor_system.hpp>

#include <chrono>

namespace eoe::actors {

/// Spawns the cluster; checkpoint "" runs the embedded default model; a joining node must
/// present `secret` (none when empty); a language model's contexts open a shard every
/// `kv_shard_positions` positions (round-robin over the nodes), and a session that no request
/// feeds for `session_idle` closes.
coordinator_actor spawn_local_cluster(caf::actor_system& sys, const std::string& checkpoint,
                                      size_t nodes, const std::string& secret = "",
                                      std::uint64_t kv_shard_positions = 4096,
                                      std::chrono::milliseconds session_idle =
                                        std::chrono::minutes(10));

/// Blocks until the coordinator admits requests; false after `timeout`.
bool wait_ready(caf::actor_system& sys, const coordinator_actor& coordinator,
                std::chrono::milliseconds timeout);

} // namespace eoe::actors
