#pragma once
// The in-process reference decoder of a language model: one token at a time, each attention
// layer's keys and values appended to context_store KV shards, and the step's attention read
// from them as per-shard partials merged exactly (context_store::merge) — the computation a
// cluster of shard actors reproduces. Its logits equal experts/model/lm_forward.hpp's row for the
// same position (tested to 1e-5).
//
// decode_step is the same computation batched over many sequences at once, as a serving
// engine's step runs it (iteration-level batching, one process, no actors): the rows of every
// sequence's tokens stacked through each expert layer in one pass, each attention layer per
// sequence over its own keys and values. lm_decoder is decode_step on one sequence.

#include "context_store/kv_shard.hpp"
#include "experts/nn/attention.hpp"
#include "experts/model/forward.hpp"
#include "experts/model/lm_generate.hpp"
#include "experts/model/model.hpp"
#include "kernels/backend.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::experts {

/// One sequence's keys and values: the KV shards of every config layer (none for an expert
/// layer), and the tokens fed so far.
struct lm_sequence {
  std::vector<std::vector<context::kv_shard>> kv;
  std::int64_t position = 0;
};

/// The tokens one sequence takes in a step.
struct step_feed {
  lm_sequence* sequence = nullptr;
  std::span<const std::uint8_t> tokens;
};

/// Runs one step over several sequences' tokens (each sequence at most once), rows stacked in
/// feed order; advances every sequence. Returns the logits (total tokens, vocab) in the same
/// row order; `records`, when given, gets what each expert layer decided over the stacked
/// rows. Throws std::invalid_argument when m is not a language model, a feed has no tokens or
/// a token is not below the vocab (then no sequence has moved).
matrix decode_step(const model& m, kernels::backend& be, const kv_layout& layout,
                   std::span<const step_feed> feeds, std::vector<layer_record>* records = nullptr);

/// Decodes one sequence. Holds a reference to the model, which must outlive it.
class lm_decoder final : public sequence_decoder {
public:
  /// Throws std::invalid_argument when m is not a language model.
  explicit lm_decoder(const model& m, kv_layout layout = {});

  /// Feeds the token at the next position; returns the logits (1, vocab) of the token after
  /// it. Positions past the model's context run (RoPE has no table to outgrow) but were
  /// never trained on.
  matrix step(std::uint8_t token) {
    return feed({&token, 1});
  }

  /// Feeds tokens at the next positions in one pass (causal within them); returns their
  /// logits (tokens, vocab).
  matrix feed(std::span<const std::uint8_t> tokens) override;

  void restart() override;

  /// Tokens fed so far: the position the next step runs at.
  std::int64_t position() const noexcept override {
    return seq_.position;
  }

  /// The KV shards of config layer l (none for an expert layer).
  const std::vector<context::kv_shard>& shards(size_t layer) const {
    return seq_.kv.at(layer);
  }

  /// What every expert layer decided on the last feed.
  const std::vector<layer_record>& last_layers() const noexcept {
    return last_;
  }

private:
  const model* m_;
  std::unique_ptr<kernels::backend> be_;
  kv_layout layout_;
  lm_sequence seq_;
  std::vector<layer_record> last_;
};

/// generate() of experts/model/lm_generate.hpp with an in-process decoder of m.
std::string generate(const model& m, std::string_view prompt, const sampling& s,
                     kv_layout layout = {});

} // namespace eoe::experts
