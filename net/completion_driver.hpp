#pragma once
// One choice of a completion request, driven through a cluster's language-model session by a
// small actor: it opens the session, feeds the prompt, samples each next byte from the logits
// the cluster answers (experts::generation: eoe generate's policy) and feeds it back, until
// max_tokens or a stop string; then it closes the session. Every byte sampled is reported at
// once (the gateway streams them), with the text that may be sent so far (net/completion_text)
// and, when asked, its log-probabilities. An exit message (send_exit) closes its session at
// once: a client that went away leaves nothing behind.

#include "actors/interfaces.hpp"
#include "experts/model/lm_generate.hpp"
#include "net/completion_json.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace eoe::net {

struct choice_spec {
  std::string prompt;
  std::int64_t context = 128;      ///< the model's: generate()'s windowing
  experts::sampling sampling;      ///< tokens = max_tokens
  std::vector<std::string> stop;
  std::optional<std::uint32_t> logprobs; ///< top alternatives per token, when asked
  bool echo = false;               ///< the prompt (and its logprobs) before the completion
  std::uint32_t deadline_ms = 30000; ///< of each step
};

/// What a choice reports, on a CAF thread: one event per sampled byte, the last with
/// finish_reason (or error) set.
struct choice_event {
  std::string text;                       ///< to send now (valid UTF-8; may be empty)
  std::vector<token_logprob> logprobs;    ///< of the bytes this event covers, when asked
  size_t tokens = 0;                      ///< bytes sampled by this event (0 or 1)
  std::string finish_reason;              ///< "stop" or "length" once it ends
  std::string error;                      ///< set when it failed: why
  boost::beast::http::status error_status = boost::beast::http::status::internal_server_error;
  std::uint64_t prompt_tokens = 0;        ///< the prompt's bytes (in the last event)
};

using choice_sink = std::function<void(choice_event)>;

/// Starts a choice; its events go to sink. An exit message stops it (its session closes; one
/// still being opened closes when its id comes).
caf::actor spawn_choice(caf::actor_system& sys, actors::coordinator_actor coordinator,
                        choice_spec spec, choice_sink sink);

/// Log-softmax of a row of logits: the token's and the `top` best (most likely first; ties
/// keep the lower token).
token_logprob logprob_of(const float* logits, size_t vocab, std::uint8_t token, std::uint32_t top);

} // namespace eoe::net
