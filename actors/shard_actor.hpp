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
#include <span>
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

/// A batch of decode calls, call i on shards[i] (null: left as it is in out, for the caller
/// to name): each answer, or its error, in out[i]. Calls on different shards are independent
/// (each appends to and reads its own shard), so when every call has its own shard and they
/// hold at least `parallel_from` positions in all, the calls run on every core; the answers
/// are the same whichever thread computes them. Calls sharing a shard keep their order.
void decode_calls(std::span<const std::shared_ptr<hosted_shard>> shards,
                  std::span<const shard_call> calls, std::vector<attention_reply>& out,
                  std::int64_t parallel_from);

/// What the node agent gives decode_calls: below it, starting threads costs more than it
/// saves (measured: 8 sessions at context 128 lost 6% on 2 cores, 64 gained 16% at 128-700).
inline constexpr std::int64_t parallel_decode_positions = 4096;

/// A shard's round-one answer: per query row, its best blocks as (score, local block) pairs.
std::string pack_candidates(const std::vector<std::vector<context::scored_block>>& rows);
std::vector<std::vector<context::scored_block>> unpack_candidates(const std::string& bytes,
                                                                   int shard);

} // namespace eoe::actors
