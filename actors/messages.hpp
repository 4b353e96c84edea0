#pragma once
// Every message of the actor mesh: its atom, declared once with what it is for, and its
// payload struct with inspect(). Tensors travel as raw little-endian float32 bytes in a
// std::string (CAF 0.17 serialises a std::vector<float> element by element, ~15x slower).

#include "context_store/kv_shard.hpp"

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace eoe::actors {

// ---- atoms -------------------------------------------------------------------------------

/// client -> coordinator -> composer: run one inference request.
using infer_atom = caf::atom_constant<caf::atom("infer")>;
/// expert -> relay -> experts or composer: one expert's output for the next layer.
using contrib_atom = caf::atom_constant<caf::atom("contrib")>;
/// relay -> peers of an expert's layer: its top-k ranking scores for a request (they reach
/// the relay as a contribution of kind score_share).
using scores_atom = caf::atom_constant<caf::atom("scores")>;
/// expert -> composer: what the expert decided on a layer (its scores and active rows).
using record_atom = caf::atom_constant<caf::atom("record")>;
/// coordinator -> relays -> experts: the plan of a membership epoch.
using plan_atom = caf::atom_constant<caf::atom("plan")>;
/// coordinator -> node agent: spawn the experts this node hosts.
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
/// self-addressed timer (composer, expert): the one armed for the time it carries (steady
/// clock nanoseconds, actors/deadline_set.hpp) has come; whatever fell due by now is handled.
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
/// anyone -> coordinator or node agent: report the cluster's or the node's state.
using status_atom = caf::atom_constant<caf::atom("status")>;
/// anyone -> coordinator -> node agents: stop the cluster.
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
/// anyone -> relay: message and byte counters of what crossed into this node.
using stats_atom = caf::atom_constant<caf::atom("stats")>;
/// test hook, coordinator -> expert: stop answering (to exercise deadlines).
using mute_atom = caf::atom_constant<caf::atom("mute")>;
/// a positive acknowledgement.
using ok_atom = caf::atom_constant<caf::atom("ok")>;
/// ctl -> coordinator: add an expert to a layer (a new epoch).
using add_expert_atom = caf::atom_constant<caf::atom("addexpert")>;
/// ctl -> coordinator: remove an expert (a new epoch; it drains, then exits).
using remove_expert_atom = caf::atom_constant<caf::atom("rmexpert")>;
/// ctl -> coordinator: move every expert off a node (a new epoch without them).
using drain_atom = caf::atom_constant<caf::atom("drain")>;
/// new node or ctl -> coordinator: register a node agent with the cluster.
using join_atom = caf::atom_constant<caf::atom("join")>;
/// coordinator -> relays, experts, composer: an epoch has no requests left; forget it.
/// coordinator -> node agent: an expert is in no live epoch; end it.
using retire_atom = caf::atom_constant<caf::atom("retire")>;
/// anyone -> coordinator: the model of an epoch, as checkpoint bytes (for references).
using model_atom = caf::atom_constant<caf::atom("model")>;
/// anyone -> coordinator: the context composer of the cluster.
using context_atom = caf::atom_constant<caf::atom("context")>;
/// client -> context composer: create a context; context composer -> node agent: a shard.
using create_atom = caf::atom_constant<caf::atom("create")>;
/// client -> context composer -> shard: append keys and values.
using append_atom = caf::atom_constant<caf::atom("append")>;
/// client -> context composer -> shards: attention of queries over a context.
using query_atom = caf::atom_constant<caf::atom("query")>;
/// context composer -> shard: score every block (round one of a global top-k).
using score_atom = caf::atom_constant<caf::atom("score")>;
/// coordinator -> node agent: read your clock (for the clock offset), or here is your offset.
using clock_atom = caf::atom_constant<caf::atom("clock")>;
/// composer -> context composer -> shards: append keys and values, then every head's exact
/// causal attention of the queries over the context, in one round (a decode step).
using decode_atom = caf::atom_constant<caf::atom("decode")>;
/// client -> context composer: forget a context (its shards exit).
/// client -> coordinator -> composer: close a language-model session (its contexts go).
using drop_atom = caf::atom_constant<caf::atom("drop")>;
/// client -> coordinator -> composer: open a language-model session (one sequence whose keys
/// and values live in the cluster's context shards).
using session_atom = caf::atom_constant<caf::atom("session")>;
/// coordinator -> itself: ping every node agent, and declare lost those silent too long.
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
/// coordinator -> node agent: you were declared lost (the reason); your experts are out of
/// the cluster: exit.
using fence_atom = caf::atom_constant<caf::atom("fence")>;

// ---- payloads ----------------------------------------------------------------------------

/// A row-major float32 matrix as raw bytes: rows * cols * 4 little-endian bytes.
struct wire_tensor {
  std::uint32_t rows = 0;
  std::uint32_t cols = 0;
  std::string bytes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_tensor& x) {
  return f(caf::meta::type_name("wire_tensor"), x.rows, x.cols, x.bytes);
}

/// A client's request: tokens (T, input width) and, for hash layers, one id per token. To a
/// language model: no tokens, the T byte tokens as ids, fed to an open session at the
/// session's next position; the output is their logits (T, vocab).
struct infer_request {
  wire_tensor tokens;
  std::string ids;               ///< T uint64, little-endian; empty: the row index
  std::uint64_t session = 0;     ///< language models: the session (net/lm_client.hpp)
  std::uint64_t position = 0;    ///< language models: where the tokens start in the session
  std::uint32_t deadline_ms = 5000;
  bool want_record = true;       ///< return the activation record of every layer
  bool trace = false;            ///< trace this request (whatever the cluster's sampling)
  std::uint64_t trace_id = 0;    ///< set by the coordinator: nonzero when traced
  std::uint64_t trace_msg = 0;   ///< coordinator -> composer: the message id of the hop
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, infer_request& x) {
  return f(caf::meta::type_name("infer_request"), x.tokens, x.ids, x.session, x.position,
           x.deadline_ms, x.want_record,
           x.trace, x.trace_id, x.trace_msg);
}

/// One layer of an activation record, as layer_record in experts/model/forward.hpp, except
/// that experts are named by their stable ids: with `layer`, the "L.E" names /v1/topology and
/// `eoe status` list (positions in the epoch's layer shift when an expert leaves; ids do not).
struct wire_layer_record {
  std::uint8_t kind = 0;
  std::uint32_t layer = 0; ///< the config layer run (a recurrent layer's steps share it)
  std::string members;     ///< uint32 per member: stable ids in position order (scores' columns)
  wire_tensor scores;      ///< (T, E); empty for hash and dense layers
  std::string offsets;     ///< T + 1 int32
  std::string experts;     ///< int32 per entry: the active expert's stable id
  std::string gates;       ///< float per entry
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_layer_record& x) {
  return f(caf::meta::type_name("wire_layer_record"), x.kind, x.layer, x.members, x.scores,
           x.offsets, x.experts, x.gates);
}

/// The answer to an infer_request.
struct infer_result {
  std::uint64_t request = 0;
  std::uint64_t epoch = 0;
  wire_tensor output;
  std::vector<wire_layer_record> layers; ///< one per layer as run; empty unless asked
  std::uint64_t trace_id = 0;  ///< nonzero: the request was traced under this id
  std::uint64_t trace_msg = 0; ///< composer -> coordinator: the message id of the answer
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, infer_result& x) {
  return f(caf::meta::type_name("infer_result"), x.request, x.epoch, x.output, x.layers,
           x.trace_id, x.trace_msg);
}

/// What a contribution carries (a byte on the wire; receivers refuse any other value).
enum class contribution_kind : std::uint8_t {
  output = 0,      ///< a sender's output for the next layer's experts or the composer
  score_share = 1, ///< a top-k expert's ranking scores in a contribution's clothes
};

/// One sender's output bound for the experts of unrolled layer `to_layer` (or, past the last
/// layer, the composer). The first member of the sending layer (the carrier) also carries the
/// residual stream h and the token ids, so that they cross each node boundary once per layer.
struct contribution {
  std::uint64_t request = 0;
  std::uint64_t epoch = 0;
  std::uint32_t to_layer = 0;  ///< unrolled layer of the receivers
  std::uint32_t sender = 0;    ///< expert index in the sending layer (0 for the embedder)
  std::string sender_node;
  std::uint32_t deadline_ms = 0; ///< the request's time budget, for the receivers' timers
  std::string rows;   ///< active rows, int32 ascending; empty: the sender abstains
  std::string scores; ///< float per active row: what the receivers' gates are made of
  wire_tensor y;      ///< (rows, D) the sender's output before gating
  wire_tensor stream; ///< (T, D) h_{l} when this is the carrier; else empty
  std::string ids;    ///< with the stream: T uint64 token ids
  std::uint64_t trace = 0; ///< the request's trace id; 0: not traced
  std::uint64_t msg = 0;   ///< traced: the message id the sender drew
  /// output: the above. score_share: a score_share in a contribution's clothes, so that it
  /// crosses between processes on the data plane's direct links: to_layer = its layer, sender
  /// = the expert, scores = its T ranking scores (contribution_of / share_of in
  /// actors/expert_actor.hpp).
  contribution_kind kind = contribution_kind::output;
  /// The composer wants every expert's decision (an activation record asked for, or a traced
  /// request): the experts send it record_atom messages. Otherwise they send none.
  bool record = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, contribution& x) {
  return f(caf::meta::type_name("contribution"), x.request, x.epoch, x.to_layer, x.sender,
           x.sender_node, x.deadline_ms, x.rows, x.scores, x.y, x.stream, x.ids, x.trace, x.msg,
           x.kind, x.record);
}

/// An expert's top-k ranking scores (score + selection bias) on every token of a request.
struct score_share {
  std::uint64_t request = 0;
  std::uint64_t epoch = 0;
  std::uint32_t layer = 0;  ///< unrolled layer
  std::uint32_t expert = 0;
  std::string sender_node;
  std::uint32_t deadline_ms = 0; ///< the request's time budget, for the receivers' timers
  std::string scores; ///< T floats
  std::uint64_t trace = 0; ///< as in contribution
  std::uint64_t msg = 0;
  bool record = true;      ///< as in contribution
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, score_share& x) {
  return f(caf::meta::type_name("score_share"), x.request, x.epoch, x.layer, x.expert,
           x.sender_node, x.deadline_ms, x.scores, x.trace, x.msg, x.record);
}

/// What an expert decided on one unrolled layer of a request. A top-k expert also sends one
/// with `decided` false when it has shared its scores and waits for its peers, so that a
/// missed deadline can tell the expert that never answered from the peers waiting for it.
struct expert_record {
  std::uint64_t request = 0;
  std::uint32_t layer = 0;  ///< unrolled layer
  std::uint32_t expert = 0;
  bool decided = true;
  std::string scores; ///< T floats (eoe: self-scores; router: probabilities); empty otherwise
  std::string rows;   ///< active rows, int32
  std::string carried; ///< float per active row: what its contribution carries
  std::uint64_t trace = 0; ///< as in contribution
  std::uint64_t msg = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, expert_record& x) {
  return f(caf::meta::type_name("expert_record"), x.request, x.layer, x.expert, x.decided,
           x.scores, x.rows, x.carried, x.trace, x.msg);
}

/// The weights of one expert to spawn: its tensors in the order of experts::ffn_expert
/// (a, w1, b1, w2, b2; empty where the layer has none).
struct expert_weights {
  std::uint32_t layer = 0; ///< config layer
  std::uint32_t id = 0;    ///< stable expert id in the layer
  std::vector<wire_tensor> tensors;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, expert_weights& x) {
  return f(caf::meta::type_name("expert_weights"), x.layer, x.id, x.tensors);
}

/// Keys or values of every head for some positions: one (positions, head_dim) tensor per head.
using heads_tensor = std::vector<wire_tensor>;

/// How a query reads a context's blocks (a byte on the wire; receivers refuse any other).
enum class attention_mode : std::uint8_t {
  full = 0,         ///< every visible block
  global_top_k = 1, ///< the k best blocks over the whole context, two rounds
  shard_budget = 2, ///< each shard's best `fraction` of its visible blocks, one round
};

/// The mode's name, or its number when it is none.
inline std::string to_string(attention_mode m) {
  switch (m) {
  case attention_mode::full: return "full";
  case attention_mode::global_top_k: return "global top-k";
  case attention_mode::shard_budget: return "per-shard budget";
  }
  return std::to_string(static_cast<int>(m));
}

/// A query of one head over a shard or a context.
struct attention_query {
  std::uint32_t head = 0;
  wire_tensor q;          ///< (rows, head_dim)
  std::string positions;  ///< rows int64: each query's position (for the causal mask)
  bool causal = true;
  attention_mode mode = attention_mode::full;
  context::block_score score = context::block_score::quest;
  std::uint32_t k = 0;    ///< top-k: blocks per query row over the whole context
  double fraction = 0;    ///< budget: share of each shard's visible blocks
  std::string blocks;     ///< to a shard: int32 local blocks to read (empty: as the mode says)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attention_query& x) {
  return f(caf::meta::type_name("attention_query"), x.head, x.q, x.positions, x.causal, x.mode,
           x.score, x.k, x.fraction, x.blocks);
}

/// Partial (or merged) attention: normalised output, row max and row sum of exponentials.
struct wire_partial {
  wire_tensor out;
  std::string max; ///< rows float
  std::string sum; ///< rows float
  std::uint64_t blocks_read = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_partial& x) {
  return f(caf::meta::type_name("wire_partial"), x.out, x.max, x.sum, x.blocks_read);
}

/// What a context is made of.
struct context_spec {
  std::uint32_t heads = 1;
  std::uint32_t head_dim = 64;
  std::uint32_t block_size = 64;
  std::uint64_t shard_size = 65536; ///< positions per shard; a new shard starts when one fills
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, context_spec& x) {
  return f(caf::meta::type_name("context_spec"), x.heads, x.head_dim, x.block_size, x.shard_size);
}

/// Counters of a node's relay: what arrived from other nodes.
struct relay_stats {
  std::uint64_t remote_messages = 0; ///< contributions and score shares from other nodes
  std::uint64_t remote_bytes = 0;    ///< their tensor and vector bytes
  std::uint64_t local_messages = 0;  ///< the same from this node's own experts
  std::uint64_t deliveries = 0;      ///< messages handed to local experts (the fan-out)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, relay_stats& x) {
  return f(caf::meta::type_name("relay_stats"), x.remote_messages, x.remote_bytes,
           x.local_messages, x.deliveries);
}

/// A language model's serving on the composer: the steps run and what they held.
struct serving_stats {
  std::uint64_t steps = 0;       ///< steps run through the mesh
  std::uint64_t step_tokens = 0; ///< tokens they ran: step_tokens / steps is the mean step
  std::uint64_t max_step = 0;    ///< the most tokens one step ran
  std::uint64_t step_ns = 0;     ///< their durations summed: step_ns / steps is the mean step
  std::uint64_t sessions = 0;    ///< open
  std::uint64_t waiting = 0;     ///< requests waiting for a step
  std::uint64_t running = 0;     ///< requests in a step in the mesh
  std::vector<std::uint64_t> kv_positions; ///< per node: the positions its context shards hold
  /// Steps by tokens: step_buckets[b] counts the steps of at most step_bucket_bound(b) tokens
  /// (and above the bound before it); the last one those past every bound.
  std::vector<std::uint64_t> step_buckets;

  static constexpr size_t bounded_step_buckets = 13; ///< 1, 2, 4, ..., 4096 tokens
  static constexpr std::uint64_t step_bucket_bound(size_t b) noexcept {
    return std::uint64_t{1} << b;
  }
  void count_step(std::uint64_t tokens) {
    step_buckets.resize(bounded_step_buckets + 1);
    size_t b = 0;
    while (b < bounded_step_buckets && tokens > step_bucket_bound(b))
      ++b;
    ++step_buckets[b];
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, serving_stats& x) {
  return f(caf::meta::type_name("serving_stats"), x.steps, x.step_tokens, x.max_step, x.step_ns, x.sessions,
           x.waiting, x.running, x.kv_positions, x.step_buckets);
}

} // namespace eoe::actors
