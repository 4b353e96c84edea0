#pragma once
// The typed interfaces of the mesh's actors: what each one accepts and answers.

#include "actors/messages.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

namespace eoe::actors {

struct mesh_plan;
struct cluster_status;
struct spawn_order;
struct spawned_node;

/// One expert of one layer (all steps of a recurrent layer), in every epoch it is a member of.
using expert_actor = caf::typed_actor<                             //
  caf::reacts_to<contrib_atom, contribution>,                      //
  caf::reacts_to<scores_atom, score_share>,                        //
  caf::replies_to<plan_atom, mesh_plan>::with<ok_atom>,            //
  caf::reacts_to<retire_atom, std::uint64_t>,                      //
  caf::reacts_to<deadline_atom, std::uint64_t>,                    //
  caf::replies_to<mute_atom, bool>::with<ok_atom>>;

/// A node's entry point for mesh traffic: a message bound for several of the node's experts
/// crosses the wire once, to the relay, which hands it to each member of the message's epoch.
using relay_actor = caf::typed_actor<                                              //
  caf::reacts_to<contrib_atom, contribution>, /* outputs, and score shares (kind 1) */ //
  caf::replies_to<plan_atom, mesh_plan>::with<ok_atom>,                            //
  caf::reacts_to<retire_atom, std::uint64_t>,                                      //
  caf::reacts_to<spawn_atom, std::uint32_t, std::uint32_t, expert_actor>,          //
  caf::reacts_to<retire_atom, std::uint32_t, std::uint32_t>,                       //
  caf::replies_to<stats_atom>::with<relay_stats>>;

/// Embeds a request, starts it on the first layer, merges the last layer's outputs, applies
/// the head, assembles the activation record and answers, or reports a missed deadline. A
/// language model's attention layers run here, between its expert layers, over the
/// sessions' contexts in the cluster's shards.
using composer_actor = caf::typed_actor<                                                        //
  caf::replies_to<infer_atom, std::uint64_t, std::uint64_t, infer_request>::with<infer_result>, //
  caf::reacts_to<contrib_atom, contribution>,                                                   //
  caf::reacts_to<record_atom, expert_record>,                                                   //
  caf::replies_to<plan_atom, mesh_plan>::with<ok_atom>,                                         //
  caf::reacts_to<retire_atom, std::uint64_t>,                                                   //
  caf::reacts_to<deadline_atom, std::uint64_t>,                                                 //
  caf::replies_to<session_atom>::with<std::uint64_t>,                                           //
  caf::replies_to<drop_atom, std::uint64_t>::with<ok_atom>,                                     //
  caf::replies_to<stats_atom>::with<serving_stats>>;

/// One shard of a long context: keys and values of a range of positions and their block
/// summaries; answers partial attention where its data lives.
using shard_actor = caf::typed_actor<                                                 //
  caf::replies_to<append_atom, heads_tensor, heads_tensor>::with<std::uint64_t>,     //
  caf::replies_to<query_atom, attention_query>::with<wire_partial>,                  //
  caf::replies_to<score_atom, attention_query>::with<std::string>,                   //
  caf::replies_to<decode_atom, heads_tensor, heads_tensor, heads_tensor,
                  std::string>::with<std::vector<wire_partial>>>;

/// One session's attention in a batched call: the keys and values its rows append to the
/// context (as append_atom would), and its queries at their positions.
struct decode_item {
  std::uint64_t context = 0;
  heads_tensor k, v, q;
  std::string positions; ///< int64 per query row
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, decode_item& x) {
  return f(caf::meta::type_name("decode_item"), x.context, x.k, x.v, x.q, x.positions);
}

/// One shard's part of a batched call: what decode_atom asks of it (k and v empty: no append).
struct shard_call {
  shard_actor shard;
  heads_tensor k, v, q;
  std::string positions;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_call& x) {
  return f(caf::meta::type_name("shard_call"), x.shard, x.k, x.v, x.q, x.positions);
}

/// The answer to one item or call of a batch: every head's partial, or why not (the others of
/// the batch do not depend on it).
struct attention_reply {
  std::string error; ///< empty: answered
  std::vector<wire_partial> heads;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attention_reply& x) {
  return f(caf::meta::type_name("attention_reply"), x.error, x.heads);
}

/// One per process: spawns and retires the node's experts and context shards on command;
/// answers a health ping with the node's name.
using node_agent_actor = caf::typed_actor<                         //
  caf::replies_to<spawn_atom, spawn_order>::with<spawned_node>,    //
  caf::replies_to<create_atom, context_spec, std::uint64_t, std::uint64_t>::with<shard_actor>, //
  caf::replies_to<decode_atom, std::vector<shard_call>>::with<std::vector<attention_reply>>, //
  caf::reacts_to<retire_atom, std::uint32_t, std::uint32_t>,       //
  caf::replies_to<status_atom>::with<std::string>,                 //
  caf::replies_to<clock_atom>::with<std::int64_t>,                 //
  caf::reacts_to<clock_atom, std::int64_t>,                        //
  caf::reacts_to<fence_atom, std::string>,                         //
  caf::reacts_to<shutdown_atom>>;

/// Creates contexts, grows them by spawning shards on the cluster's nodes as they fill, and
/// merges the shards' partial attention into global attention (full, global top-k in two
/// rounds, or a per-shard budget in one).
using context_actor = caf::typed_actor<                                               //
  caf::replies_to<create_atom, context_spec>::with<std::uint64_t>,                   //
  caf::replies_to<append_atom, std::uint64_t, heads_tensor, heads_tensor>::with<std::uint64_t>, //
  caf::replies_to<query_atom, std::uint64_t, attention_query>::with<wire_partial>,  //
  caf::replies_to<drop_atom, std::uint64_t>::with<ok_atom>,                          //
  caf::replies_to<decode_atom, std::uint64_t, heads_tensor, heads_tensor, heads_tensor,
                  std::string>::with<std::vector<wire_partial>>, //
  caf::replies_to<decode_atom, std::vector<decode_item>>::with<std::vector<attention_reply>>, //
  caf::replies_to<stats_atom>::with<std::vector<std::uint64_t>>, ///< positions held per node
  /// Node n's agent from now on (null: the node was lost; n past the end: a node joined).
  caf::reacts_to<join_atom, std::uint32_t, node_agent_actor>>;

/// Admits requests (each pinned to the epoch current at admission), owns the versioned
/// membership registry and changes it on command, watches the nodes, answers status queries.
using coordinator_actor = caf::typed_actor<                                                     //
  caf::replies_to<infer_atom, infer_request>::with<infer_result>,                              //
  caf::replies_to<status_atom>::with<cluster_status>,                                          //
  caf::replies_to<add_expert_atom, std::uint32_t, std::string, std::string>::with<std::uint64_t>, //
  caf::replies_to<remove_expert_atom, std::uint32_t, std::uint32_t>::with<std::uint64_t>,      //
  caf::replies_to<drain_atom, std::string>::with<std::uint64_t>,                               //
  caf::replies_to<join_atom, std::string, std::string, node_agent_actor, std::string>::with<ok_atom>, //
  caf::replies_to<model_atom, std::uint64_t>::with<std::string>,                               //
  caf::replies_to<context_atom>::with<context_actor>,                                          //
  caf::replies_to<session_atom>::with<std::uint64_t>,                                          //
  caf::replies_to<drop_atom, std::uint64_t>::with<ok_atom>,                                    //
  caf::replies_to<mute_atom, std::uint32_t, std::uint32_t, bool>::with<ok_atom>,               //
  caf::replies_to<stats_atom>::with<std::vector<relay_stats>>,                                 //
  caf::reacts_to<heartbeat_atom>,                                                              //
  caf::reacts_to<shutdown_atom>>;

} // namespace eoe::actors
