#pragma once
// The shard actor: one KV shard of a long context where its data lives. It appends keys and
// values, answers partial attention over all its blocks, a given set of blocks, or its own
// budget of best blocks, and scores its blocks for a global top-k.

#include "actors/interfaces.hpp"
#include "context_store/kv_shard.hpp"
#include "context_store/selection.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <optional>

namespace eoe::actors {

struct shard_state {
  std::optional<context::kv_shard> shard;

  static inline const char* name = "eoe.shard";
};

shard_actor::behavior_type shard_behavior(shard_actor::stateful_pointer<shard_state> self,
                                          context_spec spec, std::uint64_t begin,
                                          std::uint64_t capacity);

/// A shard's round-one answer: per query row, its best blocks as (score, local block) pairs.
std::string pack_candidates(const std::vector<std::vector<context::scored_block>>& rows);
std::vector<std::vector<context::scored_block>> unpack_candidates(const std::string& bytes,
                                                                   int shard);

} // namespace eoe::actors
