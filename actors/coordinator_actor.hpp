#pragma once
// The coordinator: admits requests (an id and the membership epoch current at admission for
// each), owns the versioned registry of nodes and experts, and changes it on command (add an
// expert, remove one, drain a node, join a node) or when a node is lost. Every change makes a
// new epoch: its plan reaches every relay (and through them every expert) and the composer
// before it admits anything into it. An epoch with no requests left retires; an expert no live
// epoch counts is retired by its node (the drain of a removed expert).

#include "actors/composer_actor.hpp"
#include "actors/registry_file.hpp"
#include "actors/request_batcher.hpp"
#include "actors/shard_placement.hpp"

#include <caf/io/middleman_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <deque>
#include <map>
#include <set>
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
  double trace_sample = 0;                   ///< share of requests traced (0: only flagged ones)
  std::string secret;                        ///< a joining node must present it ("" = none asked)
  std::uint64_t kv_shard_positions = 4096;   ///< language models: positions per context shard
  std::uint32_t kv_block_size = 64;          ///< language models: positions per block summary
  shard_placement kv_placement = shard_placement::head; ///< language models: where shards go
  std::chrono::milliseconds session_idle{600'000}; ///< language models: an idle session closes
  /// Classifier requests that arrive while the mesh is busy are stacked into batches of at
  /// most this many rows (0: every request alone), with this many batches in the mesh at once
  /// (1 measured best on 2 shared cores: bench/RESULTS.md, bench_batching).
  std::uint32_t max_batch_rows = 4096;
  std::uint32_t batches_in_flight = 1;
  /// Language models: tokens per step (every session's next token and prefill chunks) and
  /// steps in the mesh at once (actors/step_scheduler.hpp).
  std::uint32_t max_step_tokens = 256;
  std::uint32_t steps_in_flight = 2;
  /// Failure detection: the coordinator pings every other node's relay each heartbeat_ms and
  /// declares lost a node that has not answered for suspect_after_ms (0: only a node whose
  /// process or link goes down is lost).
  std::uint32_t heartbeat_ms = 0;
  std::uint32_t suspect_after_ms = 1000;
  /// The durable registry (actors/registry_file.hpp: a folder, or etcd shared with standby
  /// heads): every epoch is written there before it is published (null = in memory only).
  std::shared_ptr<registry_store> registry;
  /// A restarted head's last epoch, read from the registry: the coordinator resumes it instead
  /// of starting from the checkpoint's experts. A node whose agent is null was not reachable
  /// (or was the head before) and is resumed as lost, for the reason in `absent`.
  std::optional<resumed_registry> resume;
  std::vector<std::string> absent; ///< per node: why its agent is null ("" = not reachable)
  /// The head's term (etcd: its leader key's create_revision; 0 without etcd): in every spawn
  /// order, so that nodes obey a newer head rather than one that lost its lease.
  std::uint64_t term = 0;
  std::vector<bool> joined; ///< per node: joined with --join, not in the cluster file
  /// The middleman (CAF's, or its openssl module's for a cluster with [tls]) through which
  /// the coordinator reaches a lost node's address again: a cluster file's node started again
  /// there (by its unit, by hand) is taken back with its experts (null: lost nodes stay lost).
  caf::io::middleman_actor connector;
};

/// One node as the registry knows it.
struct registered_node {
  std::string name;
  std::string address;
  node_agent_actor agent;
  relay_actor relay;
  bool alive = true;
  std::string data; ///< its data plane address ("" = contributions go through CAF)
  std::string lost; ///< why it was lost ("" while alive)
  std::int64_t heard_ns = 0; ///< when its agent last answered a ping
  bool pinged = false;       ///< a ping is out
  bool silent = false;       ///< lost for its silence: fenced when it answers again
  bool joined = false;       ///< joined with --join (not in the cluster file)
  /// Lost: the epoch it was lost from (its experts and their weights, to restore if it comes
  /// back before anything else changed) and the epoch published without it.
  std::shared_ptr<const struct epoch_entry> before_loss;
  std::uint64_t lost_from = 0; ///< the epoch current when it was lost
  std::uint64_t without = 0;   ///< 0: none could be made (the cluster broke: `broke`)
  bool broke = false;
  std::int64_t retry_ns = 0;        ///< lost: when to try its address again
  std::int64_t retry_gap_ms = 0;    ///< lost: the wait after the last try (doubles to 30 s)
  bool retrying = false;            ///< lost: a connection to its address is being tried
};

/// One membership epoch.
struct epoch_entry {
  std::shared_ptr<const experts::model> model; ///< members' weights in position order
  std::vector<std::vector<std::uint32_t>> members;   ///< [layer] -> stable ids
  std::vector<std::vector<std::uint32_t>> placement; ///< [layer][position] -> node
  mesh_plan plan;
  std::uint64_t in_flight = 0;
};

/// A request between admission and answer.
struct admitted_request {
  caf::typed_response_promise<infer_result> rp;
  std::uint64_t epoch = 0;
};

struct coordinator_state {
  coordinator_setup setup;
  composer_actor composer;
  context_actor contexts; ///< the cluster's context composer (long contexts in shards)
  std::vector<registered_node> nodes;
  std::map<std::pair<std::uint32_t, std::uint32_t>, expert_actor> experts; ///< by (layer, id)
  std::vector<std::uint32_t> next_id;             ///< per layer: the next stable id
  std::map<std::uint64_t, epoch_entry> epochs;    ///< live epochs
  std::map<std::uint64_t, std::shared_ptr<const experts::model>> history; ///< recent models
  std::uint64_t current = 0;                      ///< epoch new requests join; 0: not ready
  std::uint64_t last_epoch = 0;
  bool changing = false;                          ///< a membership change is being published
  /// A node was lost and the epoch without it is being published: requests wait here (the
  /// current epoch needs the lost node) and join the new epoch once it is out.
  std::string rebuilding;
  std::deque<std::pair<infer_request, caf::typed_response_promise<infer_result>>> held;
  std::string broken;                             ///< why no request can be admitted, if so
  std::map<std::uint64_t, admitted_request> requests;
  std::uint64_t next_request = 0;
  std::uint64_t served = 0, failed = 0;
  std::uint64_t lost_down = 0, lost_silent = 0; ///< nodes lost: gone, or silent too long
  request_batcher batcher{0, 1};                  ///< set from the setup when the actor starts
  std::uint64_t batches = 0;                      ///< sent to the composer
  std::map<std::uint64_t, std::uint64_t> batch_of; ///< an unanswered member -> its batch
  std::map<std::uint64_t, size_t> batch_left;      ///< a batch -> its members unanswered
  std::uint64_t trace_salt = 0; ///< trace id = salt ^ request id (distinct across restarts)
  std::uint32_t checkpoint_crc = 0;  ///< model_crc of the checkpoint (with a state_dir)
  std::deque<std::string> changes;   ///< what made each recent epoch (the registry's changes)
  std::string registry;              ///< where the registry is and whether it was resumed

  static inline const char* name = "eoe.coordinator";
};

coordinator_actor::behavior_type
coordinator_behavior(coordinator_actor::stateful_pointer<coordinator_state> self,
                     coordinator_setup setup);

/// Round-robin placement: expert e of layer l on node (e + l) mod nodes.
std::vector<std::vector<std::uint32_t>> round_robin_placement(const experts::model_config& c,
                                                              size_t nodes);

} // namespace eoe::actors
