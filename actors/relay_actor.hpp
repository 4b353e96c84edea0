#pragma once
// The relay: a node's entry point for mesh traffic. A contribution or a score share bound for
// several experts of this node arrives once and is handed to each of them (the message is
// shared, not copied). It counts what crossed from other nodes.

#include "actors/expert_actor.hpp"

#include <map>
#include <vector>

namespace eoe::actors {

struct relay_state {
  std::string node;
  std::vector<std::uint32_t> schedule;                  ///< unrolled layer -> config layer
  std::map<std::uint32_t, std::vector<expert_actor>> local; ///< config layer -> local experts
  relay_stats stats;

  static inline const char* name = "eoe.relay";
};

/// local: the node's experts by config layer.
relay_actor::behavior_type relay_behavior(relay_actor::stateful_pointer<relay_state> self,
                                          std::string node,
                                          std::vector<std::uint32_t> schedule,
                                          std::map<std::uint32_t, std::vector<expert_actor>> local);

} // namespace eoe::actors
