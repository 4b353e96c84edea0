#pragma once
// The composer: starts each request (embedding, then the first layer), merges the last
// layer's outputs into the residual stream, applies the head, assembles the activation
// record from what every expert decided, and answers; or, when the deadline passes first,
// answers with an error that names the request, the layer and the experts that did not answer.
//
// A language model's request (a feed) gives tokens to a session. Feeds run in steps, batched
// at the iteration level (actors/step_scheduler.hpp): each step stacks the next token of
// every waiting feed and prefill chunks up to a token budget, and runs them through the mesh
// as one request, so an expert layer gets one message per node relay for every session.
// Between expert layers the composer runs the attention layers: it merges the previous expert
// layer's outputs, projects the normed stream to queries, keys and values
// (experts/nn/attention.hpp), and for each session of the step appends its rows' keys and values
// to the session's context of that layer (the context composer spreads them over shard
// actors on the nodes) and asks for every head's attention over it (the shards' partials
// merged exactly); then it adds the output projection to the stream and starts the next
// expert layer. Every row's answer depends on its own session alone, so a feed's logits are
// what they would be in a step of its own; a feed that fails (its deadline, its context)
// fails alone and the others of its step finish.

#include "actors/deadline_set.hpp"
#include "actors/expert_actor.hpp"
#include "actors/step_scheduler.hpp"

#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <set>

namespace eoe::actors {

/// A request in the mesh: a classifier request, or a language model's step.
struct pending_request {
  caf::typed_response_promise<infer_result> rp; ///< classifier requests: the answer
  std::shared_ptr<const epoch_view> view; ///< the request's epoch
  Eigen::Index tokens = 0;
  bool want_record = true;
  std::uint32_t deadline_ms = 0;
  std::uint64_t trace = 0; ///< the request's trace id (0: not traced)
  step_plan step;            ///< language models: the feeds' rows (empty: a classifier request)
  std::int64_t started_ns = 0; ///< when the step left
  std::string ids;           ///< T uint64: the token ids the experts read (hash layers)
  /// The unrolled layer the composer starts next: the outputs it collects are layer
  /// to_layer - 1's (to_layer = the schedule's size: the last layer's, before the head).
  std::uint32_t to_layer = 0;
  std::vector<std::optional<caf::message>> outputs;   ///< layer to_layer - 1's, by expert
  size_t outputs_in = 0;
  matrix stream;        ///< the residual stream through the attention stage
  int attending = -1;   ///< the config layer whose attention is in flight (-1: none)
  std::optional<matrix> output; ///< the head's output, once computed
  std::vector<std::vector<std::optional<expert_record>>> records; ///< [unrolled][expert]
  std::vector<std::vector<bool>> heard; ///< [unrolled][expert]: any sign of life
  size_t records_in = 0, records_expected = 0;
};

/// A language model's request: tokens given to a session, run in one or more steps.
struct lm_feed {
  caf::typed_response_promise<infer_result> rp;
  std::shared_ptr<const epoch_view> view; ///< the feed's epoch
  std::uint64_t session = 0;
  std::uint64_t position = 0; ///< the first token's position
  std::vector<std::uint64_t> ids;
  std::uint32_t deadline_ms = 0;
  std::uint64_t trace = 0;
  bool want_record = false;
  matrix logits;              ///< (tokens, vocab), filled as its steps finish
  std::uint64_t step = 0;     ///< the step it runs in (0: waiting for one)
};

/// One sequence of a language model: a context per attention layer.
struct lm_session {
  std::vector<std::uint64_t> contexts; ///< [config layer] -> context id (0: an expert layer)
  std::uint64_t position = 0;          ///< tokens fed: where the next request starts
  bool busy = false;                   ///< a request is feeding it
  std::string broken;                  ///< why it can take no more tokens, if so
  std::chrono::steady_clock::time_point last_fed; ///< when its last request ended
};

/// What a composer's timer is for: a request's deadline or a session's idle limit.
enum class composer_timer : std::uint8_t { deadline, idle };
using composer_timer_key = std::pair<composer_timer, std::uint64_t>;
using composer_timers = deadline_set<composer_timer_key>;

/// Where a served language model keeps its keys and values.
struct composer_setup {
  context_actor contexts;  ///< the cluster's context composer
  std::uint64_t shard_positions = 4096; ///< positions per context shard
  std::uint32_t block_size = 64;        ///< positions per block summary
  size_t max_sessions = 1024;
  /// A session that no request feeds for this long is closed and its contexts dropped (a
  /// client that died leaves nothing behind); 0: never.
  std::chrono::milliseconds session_idle{600'000};
  /// Tokens per step (decode tokens and prefill chunks of every session), and steps in
  /// flight at once.
  std::uint32_t max_step_tokens = 256;
  std::uint32_t steps_in_flight = 2;
};

struct composer_state {
  /// Embedding, attention and head (membership never changes them).
  std::shared_ptr<const experts::model> model;
  std::string node;
  composer_setup setup;
  std::unique_ptr<kernels::backend> be;
  std::map<std::uint64_t, std::shared_ptr<const epoch_view>> epochs;
  std::map<std::uint64_t, pending_request> pending; ///< by request id (steps: step id)
  std::map<std::uint64_t, lm_feed> feeds;           ///< by request id
  step_scheduler scheduler{256, 2};
  std::uint64_t next_step = 0;
  serving_stats stats;
  std::map<std::uint64_t, lm_session> sessions;
  std::uint64_t next_session = 0;
  std::set<std::uint64_t> expired; ///< the latest sessions closed for idling (at most 4096)
  /// Requests' deadlines and sessions' idle limits, behind one delayed message (deadlines
  /// handled at most 5 ms late).
  composer_timers timers{std::chrono::milliseconds(5)};

  static inline const char* name = "eoe.composer";
};

composer_actor::behavior_type
composer_behavior(composer_actor::stateful_pointer<composer_state> self,
                  std::shared_ptr<const experts::model> model, std::string node,
                  composer_setup setup = {});

} // namespace eoe::actors
