#pragma once
// The shard actor: one KV shard of a long context where its data lives. It appends keys and
// values, answers partial attention over all its blocks, a given set of blocks, or its own
// budget of best blocks, and scores its blocks for a global top-k.
//
// The shard's data is shared with the node agent that spawned it (a hosted_shard, locked by
// whoever touches it): a batch of decode calls for many shards of the node (a serving step's
// attention) runs in the agent in one pass, with no message to each shard.

#include "actors/interfaces.hpp"
#include "context_store/kv_shard.hpp"
#include "context_store/selection.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <memory>
#include <mutex>

namespace eoe::actors {

/// A KV shard and the lock every reader and writer takes.
struct hosted_shard {
  hosted_shard(const context_spec& spec, std::uint64_t begin, std::uint64_t capacity);
  std::mutex mu;
  context::kv_shard shard;
};

/// The most rows one query or score call may carry: a shard's score buffers for it take
/// rows x 2048 x 8 bytes (256 MiB at the most). Decodes run the composer's steps, bounded by
/// its step budget, and are not held to it.
inline constexpr std::uint32_t max_query_rows = 16384;

struct shard_state {
  std::shared_ptr<hosted_shard> hosted;

  static inline const char* name = "eoe.shard";
};

shard_actor::behavior_type shard_behavior(shard_actor::stateful_pointer<shard_state> self,
                                          std::shared_ptr<hosted_shard> hosted);

/// decode_atom on a shard: appends k and v (none when empty), then every head's causal
/// attention of q (rows at `positions`, int64 each) over the shard's blocks. Throws
/// std::invalid_argument naming what does not fit; takes the shard's lock.
std::vector<wire_partial> decode_on(hosted_shard& h, const heads_tensor& k, const heads_tensor& v,
                                    const heads_tensor& q, const std::string& positions);

/// A shard's round-one answer: per query row, its best blocks as (score, local block) pairs.
std::string pack_candidates(const std::vector<std::vector<context::scored_block>>& rows);
std::vector<std::vector<context::scored_block>> unpack_candidates(const std::string& bytes,
                                                                   int shard);

} // namespace eoe::actors
