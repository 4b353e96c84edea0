#pragma once
// The expert actor: one expert of one layer (every step of a recurrent layer), a member of
// every epoch whose plan lists it.
//
// Per request and layer it waits for an output or an abstain from every member of the
// previous layer in the request's epoch (the embedder for the first layer), mixes them into
// the residual stream (with its own affinity weights), scores itself, in top-k mode exchanges
// ranking scores with its layer peers, computes if active, and sends its output (or an
// abstain) to the relays of every node hosting the next layer (the composer after the last)
// and what it decided to the composer. The first member of the layer carries the residual
// stream on.

#include "actors/deadline_set.hpp"
#include "actors/interfaces.hpp"
#include "actors/plan.hpp"
#include "experts/model/model.hpp"
#include "experts/nn/weighted_output.hpp"
#include "kernels/backend.hpp"

#include <caf/message.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace eoe::actors {

/// Who an expert actor is and what it computes with.
struct expert_spec {
  std::shared_ptr<const experts::ffn_expert> weights;
  std::uint32_t layer = 0; ///< config layer
  std::uint32_t id = 0;    ///< stable id in the layer (its name is "layer.id")
  std::string node;        ///< the node it runs on
};

/// A request's progress on one unrolled layer.
struct layer_work {
  std::vector<std::optional<caf::message>> got; ///< by sender position (the shared messages)
  size_t count = 0;
  bool scored = false;
  matrix stream;   ///< h_l, the layer's residual stream (the carrier sends it on)
  matrix first_in; ///< the first projection's input, all tokens: u = x A, or x
  std::vector<float> scores;  ///< own self-scores (eoe) or router probabilities
  std::vector<std::vector<float>> ranks; ///< top-k: [position] ranking scores, own included
  size_t ranks_in = 0;
  std::string ids;
  std::uint32_t deadline_ms = 0;
  std::uint64_t trace = 0;   ///< the request's trace id (0: not traced)
  bool record = true;        ///< the composer wants this request's decisions
  std::int64_t inputs_at = 0; ///< traced: when the last input arrived
};

using cleanup_timers = deadline_set<std::uint64_t>; ///< by request

struct expert_state {
  expert_spec spec;
  std::unique_ptr<kernels::backend> be;
  std::map<std::uint64_t, std::shared_ptr<const epoch_view>> epochs;
  std::map<std::pair<std::uint64_t, std::uint32_t>, layer_work> work;
  /// When each request's work is dropped if it is still here (its deadline and a grace),
  /// behind one delayed message; cleanups may run up to 250 ms late.
  cleanup_timers cleanups{std::chrono::milliseconds(250)};
  bool muted = false;
  std::string actor; ///< "expert L.ID", as trace events name it

  static inline const char* name = "eoe.expert";
};

expert_actor::behavior_type expert_behavior(expert_actor::stateful_pointer<expert_state> self,
                                            expert_spec spec);

/// "1.3": config layer 1, expert id 3 (and " (step 2)" for a later step of a recurrent layer).
std::string expert_name(std::uint32_t layer, std::uint32_t id, int step = 0);

/// The actor names trace events use: "expert 1.3", "relay n2".
std::string expert_actor_name(std::uint32_t layer, std::uint32_t id);
std::string relay_name(const std::string& node);

/// Payload bytes of a contribution (its tensors and vectors).
std::uint64_t contribution_bytes(const contribution& c) noexcept;

/// A score share as a contribution of kind 1 (what crosses the data plane), and back.
contribution contribution_of(score_share s);
score_share share_of(contribution c);

/// The outputs of every sender of a layer `lc` (contrib messages, in sender order), gated as
/// every receiver gates them: what the layer adds to the stream of `tokens` rows. Throws
/// std::invalid_argument naming a malformed field.
std::vector<experts::weighted_output> gated_outputs(const experts::layer_config& lc,
                                                    const std::vector<std::optional<caf::message>>& got,
                                                    size_t tokens);

} // namespace eoe::actors
