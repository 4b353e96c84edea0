#pragma once
// The node agent: one per process. On the coordinator's spawn orders it spawns the node's
// relay (once) and expert actors, from the checkpoint or from weights it is sent; all linked
// to it, so they end with it. It retires an expert no live epoch counts any more. A node
// outlives its head: a restarted head's order for an expert it runs replaces the actor (the
// checkpoint stays loaded; nothing the old head's requests left can mix into the new head's
// requests of the same ids), and the shards of a context composer that is gone are dropped.

#include "actors/relay_actor.hpp"
#include "actors/shard_actor.hpp"

#include <memory>

namespace eoe::actors {

struct node_agent_state {
  std::string node;
  std::map<std::string, std::shared_ptr<const experts::model>> models; ///< by checkpoint path
  relay_actor relay;
  std::map<std::pair<std::uint32_t, std::uint32_t>, expert_actor> experts; ///< by (layer, id)
  caf::actor_addr head; ///< the coordinator whose orders made the experts
  std::uint64_t term = 0; ///< its term (spawn_order::term)
  std::vector<shard_actor> shards; ///< context shards hosted here (not linked: dropped one by one)
  /// The context composer that made each shard: monitored, so that the shards of a head that
  /// is gone (killed, restarted) are dropped rather than held forever.
  std::map<caf::actor_addr, std::vector<shard_actor>> shards_of;
  std::map<caf::actor_id, std::weak_ptr<hosted_shard>> hosted; ///< their data, by actor id

  static inline const char* name = "eoe.node_agent";
};

node_agent_actor::behavior_type
node_agent_behavior(node_agent_actor::stateful_pointer<node_agent_state> self, std::string node);

/// The model of a checkpoint path, or the embedded default (fresh weights from its seed) for
/// an empty path. Throws std::runtime_error with the loader's message.
std::shared_ptr<const experts::model> load_model(const std::string& checkpoint);

} // namespace eoe::actors
