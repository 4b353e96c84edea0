#pragma once
// The in-process reference decoder of a language model: one token at a time, each attention
// layer's keys and values appended to context_store KV shards, and the step's attention read
// from them as per-shard partials merged exactly (context_store::merge) — the computation a
// cluster of shard actors reproduces. Its logits equal experts/lm_forward.hpp's row for the
// same position (tested to 1e-5).

#include "context_store/kv_shard.hpp"
#include "experts/attention.hpp"
#include "experts/forward.hpp"
#include "experts/lm_generate.hpp"
#include "experts/model.hpp"
#include "kernels/backend.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::experts {

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
    return position_;
  }

  /// The KV shards of config layer l (none for an expert layer).
  const std::vector<context::kv_shard>& shards(size_t layer) const {
    return kv_.at(layer);
  }

  /// What every expert layer decided on the last feed.
  const std::vector<layer_record>& last_layers() const noexcept {
    return last_;
  }

private:
  const model* m_;
  std::unique_ptr<kernels::backend> be_;
  kv_layout layout_;
  std::vector<std::vector<context::kv_shard>> kv_; ///< per config layer
  std::vector<layer_record> last_;
  std::int64_t position_ = 0;
};

/// generate() of experts/lm_generate.hpp with an in-process decoder of m.
std::string generate(const model& m, std::string_view prompt, const sampling& s,
                     kv_layout layout = {});

} // namespace eoe::experts
