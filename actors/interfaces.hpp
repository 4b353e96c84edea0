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
  caf::reacts_to<contrib_atom, contribution>,                                      //
  caf::reacts_to<scores_atom, score_share>,                                        //
  caf::replies_to<plan_atom, mesh_plan>::with<ok_atom>,                            //
  caf::reacts_to<retire_atom, std::uint64_t>,                                      //
  caf::reacts_to<spawn_atom, std::uint32_t, std::uint32_t, expert_actor>,          //
  caf::reacts_to<retire_atom, std::uint32_t, std::uint32_t>,                       //
  caf::replies_to<stats_atom>::with<relay_stats>>;

/// Embeds a request, starts it on the first layer, merges the last layer's outputs, applies
/// the head, assembles the activation record and answers, or reports a missed deadline.
using composer_actor = caf::typed_actor<                                                        //
  caf::replies_to<infer_atom, std::uint64_t, std::uint64_t, infer_request>::with<infer_result>, //
  caf::reacts_to<contrib_atom, contribution>,                                                   //
  caf::reacts_to<record_atom, expert_record>,                                                   //
  caf::replies_to<plan_atom, mesh_plan>::with<ok_atom>,                                         //
  caf::reacts_to<retire_atom, std::uint64_t>,                                                   //
  caf::reacts_to<deadline_atom, std::uint64_t>>;

/// One per process: spawns and retires the node's experts on command; answers a health ping
/// with the node's name.
using node_agent_actor = caf::typed_actor<                         //
  caf::replies_to<spawn_atom, spawn_order>::with<spawned_node>,    //
  caf::reacts_to<retire_atom, std::uint32_t, std::uint32_t>,       //
  caf::replies_to<status_atom>::with<std::string>,                 //
  caf::reacts_to<shutdown_atom>>;

/// Admits requests (each pinned to the epoch current at admission), owns the versioned
/// membership registry and changes it on command, watches the nodes, answers status queries.
using coordinator_actor = caf::typed_actor<                                                     //
  caf::replies_to<infer_atom, infer_request>::with<infer_result>,                              //
  caf::replies_to<status_atom>::with<cluster_status>,                                          //
  caf::replies_to<add_expert_atom, std::uint32_t, std::string, std::string>::with<std::uint64_t>, //
  caf::replies_to<remove_expert_atom, std::uint32_t, std::uint32_t>::with<std::uint64_t>,      //
  caf::replies_to<drain_atom, std::string>::with<std::uint64_t>,                               //
  caf::replies_to<join_atom, std::string, std::string, node_agent_actor>::with<ok_atom>,       //
  caf::replies_to<model_atom, std::uint64_t>::with<std::string>,                               //
  caf::replies_to<mute_atom, std::uint32_t, std::uint32_t, bool>::with<ok_atom>,               //
  caf::replies_to<stats_atom>::with<std::vector<relay_stats>>,                                 //
  caf::reacts_to<shutdown_atom>>;

} // namespace eoe::actors
