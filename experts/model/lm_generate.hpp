#pragma once
// Text generation from a language model, whatever decodes it: the in-process decoder
// (experts/model/lm_decode.hpp) or a session on a cluster (net/lm_client.hpp). Both feed tokens at
// the next positions and answer their logits; the same loop samples from them, so the same
// seed gives the same text from either when their logits agree.

#include "experts/base/rng.hpp"
#include "kernels/tensor.hpp"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace eoe::experts {

/// One sequence being decoded.
class sequence_decoder {
public:
  virtual ~sequence_decoder() = default;

  /// Feeds tokens at the next positions; returns their logits (tokens, vocab): row r scores
  /// the token after tokens[r].
  virtual matrix feed(std::span<const std::uint8_t> tokens) = 0;

  /// Forgets the sequence: the next feed starts at position 0.
  virtual void restart() = 0;

  /// Tokens fed since the last restart.
  virtual std::int64_t position() const = 0;
};

/// Feeds two decoders alike and answers with the first one's logits, keeping the largest
/// difference from the second's: a cluster checked against the in-process reference.
class compared_decoder final : public sequence_decoder {
public:
  compared_decoder(sequence_decoder& used, sequence_decoder& reference)
    : used_(used), reference_(reference) {}

  /// Throws std::logic_error when the two answer different shapes.
  matrix feed(std::span<const std::uint8_t> tokens) override;
  void restart() override;
  /// Throws std::logic_error when the two stand at different positions.
  std::int64_t position() const override;

  float worst() const noexcept {
    return worst_;
  }
  /// Logit rows compared.
  size_t rows() const noexcept {
    return rows_;
  }
  size_t restarts() const noexcept {
    return restarts_;
  }

private:
  sequence_decoder& used_;
  sequence_decoder& reference_;
  float worst_ = 0;
  size_t rows_ = 0, restarts_ = 0;
};

/// How generate() picks each next token.
struct sampling {
  int tokens = 200;          ///< tokens to generate after the prompt
  double temperature = 0.8;  ///< 0: greedy (argmax)
  double top_p = 1.0;        ///< nucleus: sample among the most likely tokens whose
                             ///< probabilities sum to at least top_p (1: all of them)
  std::uint64_t seed = 1;    ///< the same seed repeats the same text
};

/// The next token from one row of logits (1, vocab): the argmax at temperature 0, else a draw
/// from softmax(logits / temperature) cut to its top-p nucleus (ties keep the lower token).
int sample_token(const matrix& logits, const sampling& s, rng& r);

/// One sequence's generation as steps, for callers that feed a decoder asynchronously (the
/// gateway's completions): next() says what to feed, take() the logits it answered, until
/// done(). The policy is generate()'s: the prompt's last `context` bytes first; when the
/// decoder would hold `context` positions, a restart on the last context / 2 bytes.
class generation {
public:
  /// Throws std::invalid_argument for an empty prompt or a context below 2.
  generation(std::int64_t context, std::string_view prompt, const sampling& s);

  /// What to feed next: from position 0 (restart: the decoder forgets its sequence first), or
  /// at the position it stands at.
  struct step {
    bool restart = false;
    std::string tokens;
  };
  const step& next() const noexcept {
    return next_;
  }

  /// The logits of next()'s tokens (their last row scores the token to come): samples it,
  /// and says what to feed after it. Returns the token. Throws std::logic_error once done().
  std::uint8_t take(const matrix& logits);

  bool done() const noexcept {
    return generated_ >= tokens_;
  }
  /// Tokens sampled so far.
  int generated() const noexcept {
    return generated_;
  }
  /// The prompt's bytes the first step feeds (its last `context`).
  size_t prompt_fed() const noexcept {
    return prompt_fed_;
  }

private:
  std::int64_t context_;
  sampling s_;
  rng rng_;
  std::string text_; ///< the prompt and what follows it
  step next_;
  std::int64_t position_ = 0; ///< the decoder's, once next_ is fed
  int generated_ = 0, tokens_ = 0;
  size_t prompt_fed_ = 0;
};

/// Feeds the prompt (at least one token; its last `context` bytes) and samples `s.tokens`
/// more, handing each to on_token as it comes (may be empty); returns them (without the
/// prompt). The sequence stays within the `context` the model was trained on: when the
/// decoder holds `context` positions, it restarts on the last context / 2 bytes (recomputing
/// their K/V in one feed), as character-level samplers crop to their block size.
std::string generate(sequence_decoder& d, std::int64_t context, std::string_view prompt,
                     const sampling& s, const std::function<void(char)>& on_token = {});

} // namespace eoe::experts
