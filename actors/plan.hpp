#pragma once
// The plan of a membership epoch: the model as it stands in that epoch (config and the
// layer-level parameters: router, affinity, thresholds, selection and gate biases), which
// experts are members of each layer and in what order, where each one runs, and the relays and
// composer every message of a request pinned to that epoch goes through. A request never sees
// two epochs.

#include "actors/interfaces.hpp"
#include "experts/base/blocks.hpp"
#include "experts/model/model.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace eoe::actors {

struct mesh_plan {
  std::uint64_t epoch = 0;
  std::string config;              ///< canonical TOML of the epoch's model config
  std::vector<std::string> nodes;  ///< node names; indices below refer to this list
  std::vector<relay_actor> relays; ///< one per node (a lost node's stays, never used)
  std::vector<std::string> data;   ///< per node: its data plane's host:port ("" = none)
  composer_actor composer;
  std::uint32_t composer_node = 0;
  /// [config layer] -> stable expert ids of the members, in position order
  std::vector<std::vector<std::uint32_t>> members;
  /// [config layer][position] -> node index
  std::vector<std::vector<std::uint32_t>> placement;
  /// [config layer] -> router, affinity, tau, select_bias, gate_bias, norm (empty where absent)
  std::vector<std::vector<wire_tensor>> layer_params;
  /// [config layer][position] -> what scores the member in a top-k EoE layer (its A when
  /// factored, else its W1's first score_columns columns), so that every expert of the layer
  /// ranks all its peers itself and no score crosses the network. Empty for other layers, for
  /// affinity layers (each expert reads its own mix of the inputs, so only it can score
  /// itself) and where a layer's would pass max_scorer_bytes: their experts share scores.
  std::vector<std::vector<wire_tensor>> scorers;
};

/// The most bytes of scorers a plan carries for one layer.
inline constexpr std::size_t max_scorer_bytes = std::size_t{4} << 20;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mesh_plan& x) {
  return f(caf::meta::type_name("mesh_plan"), x.epoch, x.config, x.nodes, x.relays, x.data, x.composer,
           x.composer_node, x.members, x.placement, x.layer_params, x.scorers);
}

/// A plan decoded once by each actor that receives it.
struct epoch_view {
  mesh_plan plan;
  experts::model_config config;
  /// the network's blocks as run (experts/base/blocks.hpp): the composer runs the attention
  /// blocks, the experts the others
  std::vector<experts::block> blocks;
  /// unrolled layer -> config layer: the expert layers as run (a recurrent layer once per
  /// step); a language model's attention layers run on the composer between them
  std::vector<std::uint32_t> schedule;
  /// layer-level parameters per config layer (experts left empty)
  std::vector<experts::layer_params> params;
  /// [config layer][position]: the members' scoring weights (mesh_plan::scorers), as experts
  /// with only a (factored) or w1 set; empty where the plan has none
  std::vector<std::vector<experts::ffn_expert>> scorers;

  /// The position of expert `id` in config layer l, or -1 when it is not a member.
  int position(size_t l, std::uint32_t id) const;

  /// The nodes hosting members of config layer l (ascending, without repeats).
  std::vector<std::uint32_t> nodes_of_layer(size_t l) const;

  /// The attention layers (config indices, in order) the composer runs before unrolled layer
  /// u starts, u = schedule.size(): after the last one, before the head. Empty for a
  /// classifier.
  std::vector<std::uint32_t> attention_before(size_t u) const;

  /// Whether the composer starts unrolled layer u (u = schedule.size(): whether it receives
  /// the last layer's outputs): the first layer, the one after an attention stage, the end.
  /// Otherwise layer u - 1's experts send their outputs straight to layer u's.
  bool composer_feeds(size_t u) const;
};

/// unrolled layer -> config layer: the expert layers as run (a recurrent layer once per step;
/// attention layers left out: the composer runs them).
std::vector<std::uint32_t> expert_schedule(const experts::model_config& c);

/// Decodes a plan; throws std::invalid_argument naming what does not fit.
std::shared_ptr<const epoch_view> decode_plan(const mesh_plan& p);

/// The plan of an epoch of model m (members and placement per config layer, in m's order).
mesh_plan make_plan(std::uint64_t epoch, const experts::model& m,
                    std::vector<std::vector<std::uint32_t>> members,
                    std::vector<std::vector<std::uint32_t>> placement,
                    std::vector<std::string> nodes, std::vector<relay_actor> relays,
                    std::vector<std::string> data, composer_actor composer,
                    std::uint32_t composer_node);

/// The weights of expert `position` of config layer l of m, as an expert_weights message.
expert_weights weights_of(const experts::model& m, std::uint32_t layer, std::uint32_t position,
                          std::uint32_t id);

/// The expert an expert_weights message carries.
experts::ffn_expert expert_from(const expert_weights& w);

/// What keeps expert weights e from being an expert of config layer l of c ("" when they fit):
/// the first tensor whose shape is not the one the config gives the layer's experts.
std::string expert_misfit(const experts::model_config& c, size_t l, const experts::ffn_expert& e);

/// What the coordinator asks a node agent to host: the initial experts from the checkpoint,
/// by (config layer, position = id), or explicit weights.
struct spawn_order {
  std::string node;       ///< the node's name
  std::string checkpoint; ///< the model file, readable on that node ("" = embedded default)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> experts;
  std::vector<expert_weights> explicit_experts;
  /// The ordering head's term (coordinator_setup::term): a node obeys a head of a newer term
  /// even while the one before still seems alive (stopped, cut off), never an older one.
  std::uint64_t term = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, spawn_order& x) {
  return f(caf::meta::type_name("spawn_order"), x.node, x.checkpoint, x.experts,
           x.explicit_experts, x.term);
}

/// What a node agent spawned.
struct spawned_node {
  std::string node;
  relay_actor relay;
  std::vector<expert_actor> experts; ///< checkpoint experts, then explicit ones, in order
  std::string data; ///< the node's data plane address ("" = none)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, spawned_node& x) {
  return f(caf::meta::type_name("spawned_node"), x.node, x.relay, x.experts, x.data);
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
  std::vector<std::string> lost;      ///< per node: why it was lost ("" while alive)
  std::uint64_t lost_down = 0;        ///< nodes lost because their process or link went down
  std::uint64_t lost_silent = 0;      ///< nodes lost because they were silent too long
  std::vector<std::string> experts;   ///< "layer.id@node" of the current epoch's members
  std::uint64_t requests_served = 0;
  std::uint64_t requests_failed = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t batches = 0; ///< sent to the mesh: requests_served / batches is the mean batch
  std::vector<std::uint64_t> live_epochs; ///< the current one and those still serving requests
  serving_stats serving; ///< language models: the composer's steps
  std::string registry;  ///< the durable registry's file and whether it was resumed ("" = none)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_status& x) {
  return f(caf::meta::type_name("cluster_status"), x.epoch, x.model, x.checkpoint, x.nodes,
           x.addresses, x.experts_per_node, x.alive, x.experts, x.requests_served,
           x.requests_failed, x.in_flight, x.batches, x.live_epochs, x.serving, x.lost,
           x.lost_down, x.lost_silent, x.registry);
}

} // namespace eoe::actors
