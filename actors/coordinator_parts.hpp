#pragma once
// The coordinator's parts, shared by the files that make it: coordinator_actor.cpp (admission,
// batches, the behavior), coordinator_epochs.cpp (publishing and retiring membership epochs,
// the first epoch) and coordinator_nodes.cpp (losing, fencing and taking back nodes). Not an
// interface of the library: the coordinator's own.

#include "actors/coordinator_actor.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace eoe::actors::coordinator_parts {

using self_ptr = coordinator_actor::stateful_pointer<coordinator_state>;
using model_ptr = std::shared_ptr<const experts::model>;
using members_t = std::vector<std::vector<std::uint32_t>>;
using done_fn = std::function<void(caf::expected<std::uint64_t>)>;

/// Models kept for `model_atom` (references of past epochs).
inline constexpr size_t history_size = 64;

/// "a, b, c".
std::string node_list(const std::vector<std::string>& names);

/// The experts an epoch places on node n, by name.
std::vector<std::string> experts_on(const epoch_entry& e, std::uint32_t n);

// coordinator_epochs.cpp

/// Retires epochs that are neither current nor serving, and the experts no live epoch counts.
void retire_idle(self_ptr self);

/// Hands a new epoch's plan to every live relay and the composer; once all have it, it becomes
/// the epoch new requests join (`done` gets its number, or why not).
void publish(self_ptr self, model_ptr m, members_t members, members_t placement,
             const std::string& what, done_fn done);

/// Spawns the first epoch's experts on every live node, then publishes it.
void start_first_epoch(self_ptr self);

// coordinator_nodes.cpp

/// Measures the clock offset of a node's agent from ours and tells the agent.
void measure_clock(self_ptr self, node_agent_actor agent, std::string node, int rounds = 8);

/// The epoch's model and membership without the experts on node n (top-k layers keep
/// k = min(k, the experts left)); empty with `why` set when a layer cannot do without them.
std::optional<std::tuple<model_ptr, members_t, members_t>>
without_node(const epoch_entry& e, std::uint32_t n, const std::string& node, std::string& why);

/// A node went away: the requests that needed it fail now, naming it; an epoch without its
/// experts is published.
void lose_node(self_ptr self, std::uint32_t n, const std::string& reason);

std::optional<std::uint32_t> node_index(const coordinator_state& st, const std::string& name);

/// Tries the addresses of lost nodes of the cluster file, and takes back those started again.
void retry_lost_nodes(self_ptr self);

// coordinator_actor.cpp

/// Pins a request to the current epoch and hands it to the batcher.
void admit(self_ptr self, infer_request req, caf::typed_response_promise<infer_result> rp);

/// A request of a batch in the mesh is answered: the batch's last frees its place.
void member_done(self_ptr self, std::uint64_t id);

} // namespace eoe::actors::coordinator_parts
