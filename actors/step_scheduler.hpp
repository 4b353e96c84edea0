#pragma once
// Iteration-level (continuous) batching of a language model's feeds, as Orca and vLLM
// schedule it: each step takes the next token of every feed that waits (a decoding session's
// one token, or the first token of a prompt) and fills the rest of a token budget with
// further tokens of the waiting feeds, oldest first (prefill chunks). Feeds join between
// steps and leave when their last token has run; a feed is in at most one step at a time, so
// its chunks run in order. Plain code with no actor: the composer feeds it feeds and finished
// steps and runs the steps it returns.
//
// Every feed of a step shares its epoch (a request never sees two). A feed marked alone (a
// traced one, or one that asks for activation records) runs whole in a step of its own.
// No feed starves: every waiting feed of the step's epoch gets a token in the next step the
// budget allows, in arrival order.

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <vector>

namespace eoe::actors {

/// Tokens [first, first + count) of one feed, at rows [row, row + count) of its step.
struct step_slice {
  std::uint64_t feed = 0;
  std::uint32_t first = 0;
  std::uint32_t count = 0;
  std::uint32_t row = 0;
};

/// A step to run: the slices in row order.
struct step_plan {
  std::uint64_t epoch = 0;
  bool alone = false; ///< one feed, whole (traced, or it asks for records)
  std::vector<step_slice> slices;
  std::uint32_t tokens = 0;
};

class step_scheduler {
public:
  /// max_tokens: the per-step token budget (at least 1); max_in_flight: steps at once.
  step_scheduler(std::uint32_t max_tokens, std::uint32_t max_in_flight);

  /// A feed of `tokens` tokens (at least 1) admitted.
  void add(std::uint64_t feed, std::uint64_t epoch, std::uint32_t tokens, bool alone);

  /// The next step to run, while fewer than max_in_flight run and some feed waits.
  std::optional<step_plan> next();

  /// A step came back: its feeds' tokens ran. Feeds with tokens left wait again; the ids of
  /// those that are done are returned (they leave the scheduler).
  std::vector<std::uint64_t> finished(const step_plan& step);

  /// A feed failed or went: it leaves, wherever it is (its slice of a running step is then
  /// ignored when the step finishes).
  void drop(std::uint64_t feed);

  bool contains(std::uint64_t feed) const {
    return feeds_.contains(feed);
  }
  std::size_t waiting() const noexcept;
  std::uint32_t in_flight() const noexcept {
    return in_flight_;
  }
  std::uint32_t max_tokens() const noexcept {
    return max_tokens_;
  }

private:
  struct feed_state {
    std::uint64_t epoch = 0;
    std::uint32_t tokens = 0;
    std::uint32_t next = 0; ///< first token not yet run
    bool alone = false;
    bool running = false;   ///< in a step in flight
  };

  std::uint32_t max_tokens_;
  std::uint32_t max_in_flight_;
  std::uint32_t in_flight_ = 0;
  std::map<std::uint64_t, feed_state> feeds_;
  std::list<std::uint64_t> order_; ///< feeds in arrival order
};

} // namespace eoe::actors
