#pragma once
// The relay: a node's entry point for mesh traffic. A contribution or a score share bound for
// several experts of this node arrives once and is handed to each local member of the
// message's epoch (the message is shared, not copied). It counts what crossed from other
// nodes.

#include "actors/expert_actor.hpp"

#include <map>
#include <vector>

namespace eoe::actors {

struct relay_state {
  std::string node;
  /// config layer -> expert id -> the local expert actor
  std::map<std::uint32_t, std::map<std::uint32_t, expert_actor>> local;
  std::map<std::uint64_t, std::shared_ptr<const epoch_view>> epochs;
  relay_stats stats;

  static inline const char* name = "eoe.relay";
};

relay_actor::behavior_type relay_behavior(relay_actor::stateful_pointer<relay_state> self,
                                          std::string node);

} // namespace eoe::actors
