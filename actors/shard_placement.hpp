#pragma once
// Where the context composer puts a language-model context's shards ([cluster] kv_placement).

#include <cstdint>

namespace eoe::actors {

/// `head`: shard i of every context on node (head + i) mod nodes: a context that fits one
/// shard is attended on the head without crossing the network, a longer one spreads over
/// every node. `spread`: each new shard of any context on the next node, round-robin.
enum class shard_placement : std::uint8_t { head, spread };

} // namespace eoe::actors
