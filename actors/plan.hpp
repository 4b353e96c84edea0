#pragma once
// The plan of a membership epoch: which node hosts which expert, and the relays and composer
// every message of a request pinned to that epoch goes through.

#include "actors/interfaces.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace eoe::actors {

struct mesh_plan {
  std::uint64_t epoch = 0;
  std::vector<std::string> nodes;  ///< node names; indices below refer to this list
  std::vector<relay_actor> relays; ///< one per node
  composer_actor composer;
  std::uint32_t composer_node = 0;
  /// [config layer][expert] -> node index
  std::vector<std::vector<std::uint32_t>> placement;

  /// The nodes hosting experts of config layer l (ascending, without repeats).
  std::vector<std::uint32_t> nodes_of_layer(size_t l) const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mesh_plan& x) {
  return f(caf::meta::type_name("mesh_plan"), x.epoch, x.nodes, x.relays, x.composer,
           x.composer_node, x.placement);
}

/// What the coordinator asks a node agent to host.
struct spawn_order {
  std::string node;       ///< the node's name
  std::string checkpoint; ///< the model file, readable on that node
  /// (config layer, expert) pairs the node hosts
  std::vector<std::pair<std::uint32_t, std::uint32_t>> experts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, spawn_order& x) {
  return f(caf::meta::type_name("spawn_order"), x.node, x.checkpoint, x.experts);
}

/// What a node agent spawned.
struct spawned_node {
  std::string node;
  relay_actor relay;
  std::vector<expert_actor> experts; ///< in the order of the spawn order's experts
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, spawned_node& x) {
  return f(caf::meta::type_name("spawned_node"), x.node, x.relay, x.experts);
}

/// The cluster as the coordinator sees it.
struct cluster_status {
  std::uint64_t epoch = 0;
  std::string model;      ///< model name
  std::string checkpoint; ///< path of the checkpoint the nodes loaded
  std::vector<std::string> nodes;
  std::vector<std::string> addresses; ///< host:port per node
  std::vector<std::uint32_t> experts_per_node;
  std::vector<bool> alive;
  std::uint64_t requests_served = 0;
  std::uint64_t requests_failed = 0;
  std::uint64_t in_flight = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_status& x) {
  return f(caf::meta::type_name("cluster_status"), x.epoch, x.model, x.checkpoint, x.nodes,
           x.addresses, x.experts_per_node, x.alive, x.requests_served, x.requests_failed,
           x.in_flight);
}

} // namespace eoe::actors
