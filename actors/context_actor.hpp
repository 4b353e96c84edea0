#pragma once
// The context composer: creates contexts, grows each by spawning a new shard actor (on the
// next node, round-robin) whenever its last shard is full, and answers attention queries by
// merging its shards' partials: over every block ("full pathway"), over a global top-k chosen
// in two rounds (every shard's candidates, then the winners' partials), or over each shard's
// own budget of best blocks in one round. Many queries are in flight at once; appends to one
// context are applied in order.

#include "actors/interfaces.hpp"
#include "actors/shard_placement.hpp"

#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <deque>
#include <functional>
#include <map>
#include <vector>

namespace eoe::actors {

/// The most memory one context shard may take (its keys, values and block summaries): a
/// context whose spec would make larger shards is refused when it is created, before a node is
/// asked for one.
inline constexpr std::uint64_t max_shard_bytes = std::uint64_t{16} << 30;

struct context_entry {
  context_spec spec;
  std::vector<shard_actor> shards;
  std::vector<std::uint64_t> begins; ///< first position of each shard
  std::vector<size_t> hosts;         ///< the node (index into nodes) of each shard
  std::uint64_t length = 0;          ///< positions appended
  std::uint64_t last_capacity_left = 0;
  bool busy = false;                 ///< an append is being applied
  std::deque<std::function<void()>> waiting; ///< appends queued behind it
};

struct context_state {
  std::vector<node_agent_actor> nodes;
  size_t local = 0; ///< the index in nodes of this process's node agent
  shard_placement placement = shard_placement::head;
  size_t next_node = 0;
  std::map<std::uint64_t, context_entry> contexts;
  std::uint64_t next_id = 0;

  static inline const char* name = "eoe.context";
};

context_actor::behavior_type context_behavior(context_actor::stateful_pointer<context_state> self,
                                              std::vector<node_agent_actor> nodes,
                                              size_t local, shard_placement placement);

} // namespace eoe::actors
