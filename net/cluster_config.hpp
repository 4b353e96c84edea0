#pragma once
// A cluster file: the nodes (name, host, port), which node is the head (coordinator and
// composer), the model every node loads, where each expert runs, and request defaults. Strict
// validation, as every eoe config: errors name file, line, key, expected and actual value.

#include "actors/scheduler_policy.hpp"
#include "actors/shard_placement.hpp"
#include "experts/base/error.hpp"
#include "net/tls_settings.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::net {

struct node_entry {
  std::string name;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  /// [user@]host: `eoe up` starts this node there over ssh, as `ray up` does ("": locally).
  std::string ssh;
  /// Started by its own unit on its host (eoe-node@.service): `eoe up` does not start it, and
  /// waits for it with the others.
  bool unit = false;

  std::string address() const {
    return host + ":" + std::to_string(port);
  }

  bool operator==(const node_entry&) const = default;
};

/// [trace]: where the nodes write trace events and which requests are traced.
struct trace_settings {
  std::string dir;        ///< each node writes <dir>/<node>.trace.jsonl; "" = no files
  double sample = 0;      ///< share of requests traced; flagged requests always are
  std::string collector;  ///< host:port the head listens at for the live stream; "" = none

  bool enabled() const {
    return !dir.empty() || !collector.empty();
  }
  bool operator==(const trace_settings&) const = default;
};

/// [gateway]: the HTTP gateway the head runs (net/http_gateway).
struct gateway_settings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;            ///< 0: any free port
  std::string admin_token;           ///< "" = admin calls refused (403); env EOE_ADMIN_TOKEN wins
  /// Inference requests and completions in the cluster at once; the next max_queue wait
  /// (first come, first served), the ones after them get 429 with Retry-After.
  std::uint32_t max_concurrency = 64;
  std::uint32_t max_queue = 256;
  std::uint32_t max_generate = 4096; ///< the most bytes one completion choice generates
  std::uint64_t max_body_bytes = 16 << 20;
  std::uint32_t deadline_ms = 5000;  ///< default request deadline
  std::uint32_t max_tokens = 65536;
  /// Threads running the connections (each connection's handlers in order on its strand).
  std::uint32_t io_threads = 2;

  bool operator==(const gateway_settings&) const = default;
};

struct cluster_config {
  std::string name = "cluster";
  std::string checkpoint;          ///< the model file every node reads; "" = embedded default
  std::string head;                ///< name of the head node (default: the first)
  std::uint32_t deadline_ms = 5000; ///< default request deadline
  std::uint32_t middleman_workers = 0; ///< CAF middleman deserialisation threads (0: CAF's)
  std::uint32_t worker_threads = 0;    ///< CAF scheduler threads per node (0: hardware threads, >= 2)
  actors::scheduler_policy scheduler = actors::scheduler_policy::sharing; ///< of every node
  /// Language models: positions per context shard (a session's keys and values spread over
  /// the nodes a shard at a time: the first on the head, then round-robin; or round-robin
  /// from the first with kv_placement "spread") and per block summary.
  std::uint64_t kv_shard_positions = 4096;
  std::uint32_t kv_block_size = 64;
  actors::shard_placement kv_placement = actors::shard_placement::head;
  /// Language models: a session no request feeds for this long is closed, its keys and
  /// values dropped (0: never).
  std::uint32_t session_idle_s = 600;
  /// Classifier requests that arrive while the mesh is busy leave together as batches of at
  /// most max_batch_rows rows (0: every request alone), batches_in_flight at once.
  std::uint32_t max_batch_rows = 4096;
  std::uint32_t batches_in_flight = 1;
  /// Language models: each step of the mesh runs the next token of every session and prefill
  /// chunks, max_step_tokens tokens at most, steps_in_flight steps at once.
  std::uint32_t max_step_tokens = 256;
  std::uint32_t steps_in_flight = 2;
  /// Failure detection: the head pings every node each heartbeat_ms and declares lost a node
  /// silent for suspect_after_ms (a stopped or stalled process), as it does a killed one
  /// (heartbeat_ms 0: off).
  std::uint32_t heartbeat_ms = 200;
  std::uint32_t suspect_after_ms = 1000;
  std::string secret; ///< what a joining node must present ("" = none); env EOE_CLUSTER_SECRET wins
  /// The head's durable registry (actors/registry_file.hpp): every epoch is written here
  /// before it is published, and a restarted head resumes the last one ("" = in memory only).
  std::string state_dir;
  /// The registry in etcd, shared by the heads ("etcd://HOST:PORT"; "" = state_dir or memory).
  std::string registry;
  /// Nodes that can be the head ([cluster] heads, with registry): the first to win etcd's
  /// election is; the others stand by, host no experts, and take over when its lease ends.
  std::vector<std::string> heads;
  /// How `eoe up` reaches a node with `ssh`: the ssh command line (split at spaces) and the
  /// eoe binary on the far side.
  std::string ssh_command = "ssh -o BatchMode=yes";
  std::string remote_eoe = "eoe";
  std::vector<node_entry> nodes;
  /// [config layer] -> node name per expert; empty: round-robin over the nodes
  std::vector<std::vector<std::string>> placement;
  trace_settings trace;
  bool gateway_enabled = false; ///< a [gateway] table is present
  gateway_settings gateway;
  tls_settings tls; ///< [tls]: every link between the cluster's processes over TLS

  size_t head_index() const;
  /// Where clients find the head: its host:port, or with standby heads every candidate's,
  /// comma-separated in the order of heads (net::connect tries them in turn).
  std::string head_addresses() const;
  const node_entry* find(std::string_view node) const;

  bool operator==(const cluster_config&) const = default;
};

/// `source` names the text in errors; it is the file's path when there is one: relative [tls]
/// paths are resolved against its folder, and the [tls] files are read and checked
/// (check_tls) so that a node with unusable credentials never starts.
experts::expected<cluster_config> parse_cluster_config(std::string_view text,
                                                       std::string_view source);
experts::expected<cluster_config> load_cluster_config(const std::string& path);

/// The embedded default cluster: three nodes on loopback, the embedded default model.
std::string_view default_cluster_text() noexcept;

} // namespace eoe::net
