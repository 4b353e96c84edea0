#pragma once
// The coordinator: admits requests (an id and the current membership epoch for each), owns the
// registry of nodes and experts, builds the epoch plan and hands it to every relay (and through
// them to every expert) and to the composer before it admits anything.

#include "actors/composer_actor.hpp"

#include <string>
#include <vector>

namespace eoe::actors {

/// What the coordinator starts from.
struct coordinator_setup {
  std::string checkpoint; ///< the model file every node loads ("" = embedded default)
  std::shared_ptr<const experts::model> model;
  std::vector<std::string> nodes;
  std::vector<std::string> addresses;        ///< host:port per node
  std::vector<node_agent_actor> agents;      ///< per node (the head's own agent included)
  std::vector<std::vector<std::uint32_t>> placement; ///< [config layer][expert] -> node index
  std::uint32_t head = 0;                    ///< node index of the coordinator and composer
};

struct coordinator_state {
  coordinator_setup setup;
  composer_actor composer;
  std::vector<spawned_node> spawned; ///< per node
  mesh_plan plan;
  bool ready = false;
  std::uint64_t next_request = 0;
  std::uint64_t served = 0, failed = 0, in_flight = 0;

  static inline const char* name = "eoe.coordinator";
};

coordinator_actor::behavior_type
coordinator_behavior(coordinator_actor::stateful_pointer<coordinator_state> self,
                     coordinator_setup setup);

/// Round-robin placement: expert e of layer l on node (e + l) mod nodes.
std::vector<std::vector<std::uint32_t>> round_robin_placement(const experts::model_config& c,
                                                              size_t nodes);

} // namespace eoe::actors
