#include "actors/context_actor.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/shard_actor.hpp"
#include "actors/wire.hpp"
#include "context_store/selection.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include <limits>
#include <memory>

namespace eoe::actors {

namespace {

using self_ptr = context_actor::stateful_pointer<context_state>;
using promise_u64 = caf::typed_response_promise<std::uint64_t>;
using promise_partial = caf::typed_response_promise<wire_partial>;

caf::error no_context(std::uint64_t id) {
  return make_mesh_error(mesh_errc::bad_request, "context " + std::to_string(id) + " does not exist");
}

caf::error bad(std::uint64_t id, const std::string& what) {
  return make_mesh_error(mesh_errc::bad_request, "context " + std::to_string(id) + ": " + what);
}

/// What keeps a client's spec from making shards ("" when nothing): every value must fit the
/// int the math takes, and a shard's memory (keys and values, 2 x shard_size x heads x head_dim
/// floats, and its block summaries) must stay within max_shard_bytes. Zeros are refused before.
std::string spec_misfit(const context_spec& spec) {
  constexpr std::uint64_t int_max = static_cast<std::uint64_t>(std::numeric_limits<int>::max());
  const std::pair<const char*, std::uint64_t> fields[] = {
    {"heads", spec.heads}, {"head_dim", spec.head_dim}, {"block_size", spec.block_size}};
  for (auto [name, value] : fields)
    if (value > int_max)
      return std::string{name} + " = " + std::to_string(value) + " does not fit an int";
  const auto blocks = spec.shard_size / spec.block_size + (spec.shard_size % spec.block_size != 0);
  if (blocks > int_max)
    return "shard_size = " + std::to_string(spec.shard_size) + " makes "
           + std::to_string(blocks) + " blocks of " + std::to_string(spec.block_size)
           + " in a shard, more than an int counts";
  // kv_shard per head: keys and values (shard_size, head_dim) floats; per block, the mean,
  // minimum and maximum keys (head_dim floats each), their 8-bit bounds and a step.
  // In long double: the product may pass 2^64 (its 64-bit mantissa holds every integer below).
  const long double per_head =
    2.0L * static_cast<long double>(spec.shard_size) * spec.head_dim * sizeof(float)
    + static_cast<long double>(blocks) * (spec.head_dim * 14.0L + 4.0L);
  const long double bytes = per_head * spec.heads;
  if (bytes > static_cast<long double>(max_shard_bytes))
    return "a shard of " + std::to_string(spec.shard_size) + " positions ("
           + std::to_string(spec.heads) + " heads of " + std::to_string(spec.head_dim)
           + ", blocks of " + std::to_string(spec.block_size) + ") needs "
           + (bytes < 0x1p63L ? std::to_string(static_cast<std::uint64_t>(bytes)) + " bytes"
                              : std::string{"over 2^63 bytes"})
           + ", over the 16 GiB a shard may hold (make shard_size smaller)";
  return {};
}

/// What is wrong with one tensor per head as `kind` ("keys") of a context of width `cols`
/// ("" when nothing): each must be (rows, cols) in rows x cols x 4 bytes. Compared as values,
/// so that no shape wraps to a small byte count.
std::string heads_misfit(const heads_tensor& t, const char* kind, const char* needs,
                         std::uint64_t rows, std::uint32_t cols) {
  for (size_t h = 0; h < t.size(); ++h) {
    const auto& w = t[h];
    const auto values = static_cast<std::uint64_t>(w.rows) * w.cols;
    if (w.rows != rows || w.cols != cols || w.bytes.size() % sizeof(float) != 0
        || w.bytes.size() / sizeof(float) != values)
      return "head " + std::to_string(h) + " needs (" + std::to_string(rows) + ", "
             + std::to_string(cols) + ") " + needs + " in "
             + std::to_string(rows * cols * sizeof(float)) + " bytes; its " + kind + " are ("
             + std::to_string(w.rows) + ", " + std::to_string(w.cols) + ") in "
             + std::to_string(w.bytes.size()) + " bytes";
  }
  return {};
}

/// Query positions: int64 each, one per query row, in [0, 2^62) (the causal mask subtracts
/// and adds to them). "" when they fit.
std::string positions_misfit(const std::string& packed, std::uint64_t rows) {
  if (packed.size() % sizeof(std::int64_t) != 0)
    return "query positions: " + std::to_string(packed.size())
           + " bytes is not a whole number of 8-byte values";
  const auto pos = unpack<std::int64_t>(packed, "query positions");
  if (pos.size() != rows)
    return std::to_string(pos.size()) + " query positions for " + std::to_string(rows)
           + " query rows";
  for (size_t r = 0; r < pos.size(); ++r)
    if (pos[r] < 0 || pos[r] >= std::int64_t{1} << 62)
      return "query position " + std::to_string(pos[r]) + " (row " + std::to_string(r)
             + ") is outside [0, 2^62)";
  return {};
}

/// What keeps a query from being asked of a context's shards ("" when nothing).
std::string query_misfit(const context_spec& spec, const attention_query& q) {
  if (q.head >= spec.heads)
    return "query head " + std::to_string(q.head) + ", the context has "
           + std::to_string(spec.heads) + " heads";
  if (q.q.rows > max_query_rows)
    return "a query of " + std::to_string(q.q.rows) + " rows: at most "
           + std::to_string(max_query_rows) + " per query";
  const auto values = static_cast<std::uint64_t>(q.q.rows) * q.q.cols;
  if (q.q.cols != spec.head_dim || q.q.bytes.size() % sizeof(float) != 0
      || q.q.bytes.size() / sizeof(float) != values)
    return "the query is (" + std::to_string(q.q.rows) + ", " + std::to_string(q.q.cols) + ") in "
           + std::to_string(q.q.bytes.size()) + " bytes; the context's heads take ("
           + std::to_string(q.q.rows) + ", " + std::to_string(spec.head_dim) + ") in "
           + std::to_string(std::uint64_t{q.q.rows} * spec.head_dim * sizeof(float)) + " bytes";
  if (auto bad_pos = positions_misfit(q.positions, q.q.rows); !bad_pos.empty())
    return bad_pos;
  if (static_cast<std::uint8_t>(q.mode) > 2)
    return "query mode " + to_string(q.mode) + ": 0 full, 1 global top-k, 2 per-shard budget";
  if (static_cast<std::uint8_t>(q.score) > 1)
    return "query score " + std::to_string(static_cast<int>(q.score))
           + ": 0 Quest bound, 1 MoBA mean key";
  if (q.mode == attention_mode::global_top_k && q.k > static_cast<std::uint32_t>(std::numeric_limits<int>::max()))
    return "query k = " + std::to_string(q.k) + " does not fit an int";
  if (q.mode == attention_mode::shard_budget && !(q.fraction >= 0.0 && q.fraction <= 1.0)) // NaN too
    return "query fraction " + std::to_string(q.fraction) + " is outside [0, 1]";
  return {};
}

/// What keeps a decode (append k and v, then attend q at positions) from a context of spec
/// ("" when nothing).
std::string decode_misfit(const context_spec& spec, const heads_tensor& k, const heads_tensor& v,
                          const heads_tensor& q, const std::string& positions) {
  if (k.size() != spec.heads || v.size() != spec.heads || q.size() != spec.heads
      || k[0].rows != v[0].rows || k[0].rows == 0)
    return "decode takes one key, value and query tensor per head (" + std::to_string(spec.heads)
           + "), keys and values of the same rows";
  const std::uint64_t n = k[0].rows;
  if (auto m = heads_misfit(k, "keys", "keys and values", n, spec.head_dim); !m.empty())
    return "decode: " + m;
  if (auto m = heads_misfit(v, "values", "keys and values", n, spec.head_dim); !m.empty())
    return "decode: " + m;
  const std::uint64_t rows = q[0].rows;
  if (auto m = heads_misfit(q, "queries", "queries", rows, spec.head_dim); !m.empty())
    return "decode: " + m;
  if (auto m = positions_misfit(positions, rows); !m.empty())
    return "decode: " + m;
  return {};
}

/// Rows [from, from + n) of every head's tensor.
heads_tensor slice(const heads_tensor& t, std::uint64_t from, std::uint64_t n) {
  heads_tensor out;
  for (auto& h : t) {
    wire_tensor w;
    w.rows = static_cast<std::uint32_t>(n);
    w.cols = h.cols;
    const auto row = static_cast<size_t>(h.cols) * sizeof(float);
    w.bytes = h.bytes.substr(from * row, n * row);
    out.push_back(std::move(w));
  }
  return out;
}

void run_next(self_ptr self, std::uint64_t id);

/// Appends rows [done, total) of k and v to context id, spawning shards as they fill.
void append_from(self_ptr self, std::uint64_t id, std::shared_ptr<heads_tensor> k,
                 std::shared_ptr<heads_tensor> v, std::uint64_t done, std::uint64_t total,
                 promise_u64 rp) {
  auto& st = self->state;
  auto it = st.contexts.find(id);
  if (it == st.contexts.end()) {
    rp.deliver(no_context(id));
    return;
  }
  auto& c = it->second;
  if (done == total) {
    rp.deliver(c.length);
    c.busy = false;
    run_next(self, id);
    return;
  }
  auto fail = [self, id, rp](caf::error& err) mutable {
    rp.deliver(std::move(err));
    auto i = self->state.contexts.find(id);
    if (i != self->state.contexts.end()) {
      i->second.busy = false;
      run_next(self, id);
    }
  };
  if (c.last_capacity_left == 0) {
    if (st.nodes.empty()) {
      rp.deliver(make_mesh_error(mesh_errc::not_ready, "no node to host a shard"));
      c.busy = false;
      return;
    }
    auto host = st.placement == shard_placement::head
                  ? (std::min(st.local, st.nodes.size() - 1) + c.shards.size()) % st.nodes.size()
                  : st.next_node++ % st.nodes.size();
    for (size_t tries = 0; !st.nodes[host] && tries < st.nodes.size(); ++tries)
      host = (host + 1) % st.nodes.size(); // a lost node hosts nothing new
    if (!st.nodes[host]) {
      rp.deliver(make_mesh_error(mesh_errc::not_ready, "no live node to host a shard"));
      c.busy = false;
      return;
    }
    self->request(st.nodes[host], std::chrono::seconds(30), create_atom::value, c.spec, c.length,
                  c.spec.shard_size)
      .then(
        [self, id, k, v, done, total, rp, host](shard_actor s) mutable {
          auto it = self->state.contexts.find(id);
          if (it == self->state.contexts.end()) { // dropped meanwhile: so is its new shard
            self->send_exit(s, caf::exit_reason::user_shutdown);
            rp.deliver(no_context(id));
            return;
          }
          auto& c = it->second;
          c.shards.push_back(s);
          c.hosts.push_back(host);
          c.begins.push_back(c.length);
          c.last_capacity_left = c.spec.shard_size;
          append_from(self, id, k, v, done, total, rp);
        },
        fail);
    return;
  }
  const auto n = std::min(total - done, c.last_capacity_left);
  self->request(c.shards.back(), std::chrono::seconds(60), append_atom::value, slice(*k, done, n),
                slice(*v, done, n))
    .then(
      [self, id, k, v, done, n, total, rp](std::uint64_t) mutable {
        auto it = self->state.contexts.find(id);
        if (it == self->state.contexts.end()) {
          rp.deliver(no_context(id)); // dropped meanwhile
          return;
        }
        auto& c = it->second;
        c.length += n;
        c.last_capacity_left -= n;
        append_from(self, id, k, v, done + n, total, rp);
      },
      fail);
}

void run_next(self_ptr self, std::uint64_t id) {
  auto it = self->state.contexts.find(id);
  if (it == self->state.contexts.end())
    return;
  auto& c = it->second;
  if (c.busy || c.waiting.empty())
    return;
  auto next = std::move(c.waiting.front());
  c.waiting.pop_front();
  next();
}

/// Collects one partial per shard, then merges.
struct gather_state {
  std::vector<context::partial> parts;
  size_t pending = 0;
  std::uint64_t blocks = 0;
  bool failed = false;
};

void full_or_budget(self_ptr self, const context_entry& c, attention_query q, promise_partial rp) {
  auto g = std::make_shared<gather_state>();
  g->parts.resize(c.shards.size());
  g->pending = c.shards.size();
  for (size_t s = 0; s < c.shards.size(); ++s)
    self->request(c.shards[s], std::chrono::seconds(60), query_atom::value, q)
      .then(
        [g, s, rp](wire_partial& w) mutable {
          if (g->failed)
            return;
          try {
            g->parts[s] = from_wire(w);
          } catch (const std::exception& e) {
            g->failed = true;
            rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
            return;
          }
          g->blocks += w.blocks_read;
          if (--g->pending == 0) {
            try { // the shards' partials may come from other processes, of other shapes
              auto merged = to_wire(context::merge(g->parts));
              merged.blocks_read = g->blocks;
              rp.deliver(std::move(merged));
            } catch (const std::exception& e) {
              rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
            }
          }
        },
        [g, rp](caf::error& err) mutable {
          if (!g->failed) {
            g->failed = true;
            rp.deliver(std::move(err));
          }
        });
}

using promise_heads = caf::typed_response_promise<std::vector<wire_partial>>;

/// Every head's exact causal attention of q over every shard of context id, the last shard
/// appending k and v first (none when empty; they must fit in it): one round, the shards in
/// parallel; the partials merged per head.
void decode_round(self_ptr self, std::uint64_t id, heads_tensor k, heads_tensor v,
                  const heads_tensor& q, const std::string& positions, promise_heads rp) {
  auto& c = self->state.contexts.at(id);
  const auto n = k.empty() ? 0 : static_cast<std::uint64_t>(k[0].rows);
  struct round {
    std::vector<std::vector<wire_partial>> parts; ///< [shard][head]
    size_t pending = 0;
    bool failed = false;
  };
  auto g = std::make_shared<round>();
  g->parts.resize(c.shards.size());
  g->pending = c.shards.size();
  if (n > 0)
    c.busy = true; // appends queue behind this one
  auto done = [self, id, n] {
    auto i = self->state.contexts.find(id);
    if (i == self->state.contexts.end() || n == 0)
      return;
    i->second.busy = false;
    run_next(self, id);
  };
  for (size_t s = 0; s < c.shards.size(); ++s) {
    const bool last = s + 1 == c.shards.size();
    self->request(c.shards[s], std::chrono::seconds(60), decode_atom::value,
                  last ? k : heads_tensor{}, last ? v : heads_tensor{}, q, positions)
      .then(
        [self, id, g, s, n, last, done, rp](std::vector<wire_partial>& w) mutable {
          if (g->failed)
            return;
          if (last && n > 0)
            if (auto i = self->state.contexts.find(id); i != self->state.contexts.end()) {
              i->second.length += n;
              i->second.last_capacity_left -= n;
            }
          g->parts[s] = std::move(w);
          if (--g->pending > 0)
            return;
          done();
          try {
            std::vector<wire_partial> out;
            for (size_t h = 0; h < g->parts[0].size(); ++h) {
              std::vector<context::partial> ps;
              std::uint64_t read = 0;
              for (auto& shard : g->parts) {
                ps.push_back(from_wire(shard.at(h)));
                read += shard.at(h).blocks_read;
              }
              out.push_back(to_wire(context::merge(ps)));
              out.back().blocks_read = read;
            }
            rp.deliver(std::move(out));
          } catch (const std::exception& e) {
            rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
          }
        },
        [g, done, rp](caf::error& err) mutable {
          if (g->failed)
            return;
          g->failed = true;
          done();
          rp.deliver(std::move(err));
        });
  }
}

using promise_replies = caf::typed_response_promise<std::vector<attention_reply>>;

/// Many sessions' decode_atom in one call. Every shard call bound for one node crosses the
/// network in one message (the node agent hands each to its shard there); an item whose
/// context cannot take that path (a shard is due, or appends are queued) runs as decode_atom
/// alone. Every item gets its own answer or error: one failing fails no other.
void decode_batch(self_ptr self, std::vector<decode_item> items, promise_replies rp) {
  auto& st = self->state;
  struct batch {
    std::vector<attention_reply> out;
    std::vector<std::vector<std::vector<wire_partial>>> parts; ///< [item][shard][head]
    std::vector<std::uint64_t> context, rows;                ///< of the items sent to shards
    std::vector<bool> sent, appended;
    size_t pending = 1; ///< node replies and lone items out, and this function
  };
  auto b = std::make_shared<batch>();
  const auto n = items.size();
  b->out.resize(n);
  b->parts.resize(n);
  b->context.assign(n, 0);
  b->rows.assign(n, 0);
  b->sent.assign(n, false);
  b->appended.assign(n, false);
  auto finish = [self, b, rp]() mutable {
    if (--b->pending > 0)
      return;
    for (size_t i = 0; i < b->out.size(); ++i) {
      if (!b->sent[i])
        continue;
      auto& reply = b->out[i];
      if (reply.error.empty()) {
        try {
          for (size_t h = 0; h < b->parts[i][0].size(); ++h) {
            std::vector<context::partial> ps;
            std::uint64_t read = 0;
            for (auto& shard : b->parts[i]) {
              ps.push_back(from_wire(shard.at(h)));
              read += shard.at(h).blocks_read;
            }
            reply.heads.push_back(to_wire(context::merge(ps)));
            reply.heads.back().blocks_read = read;
          }
        } catch (const std::exception& e) {
          reply.heads.clear();
          reply.error = e.what();
        }
      }
      auto c = self->state.contexts.find(b->context[i]);
      if (c == self->state.contexts.end())
        continue; // dropped meanwhile
      if (b->appended[i]) {
        c->second.length += b->rows[i];
        c->second.last_capacity_left -= b->rows[i];
      }
      c->second.busy = false;
      run_next(self, b->context[i]);
    }
    rp.deliver(std::move(b->out));
  };
  std::map<size_t, std::vector<shard_call>> calls;                 // by host node
  std::map<size_t, std::vector<std::pair<size_t, size_t>>> owners; // by host: (item, shard)
  for (size_t i = 0; i < n; ++i) {
    auto& item = items[i];
    auto it = st.contexts.find(item.context);
    if (it == st.contexts.end()) {
      b->out[i].error = describe(no_context(item.context));
      continue;
    }
    auto& c = it->second;
    if (auto misfit = decode_misfit(c.spec, item.k, item.v, item.q, item.positions);
        !misfit.empty()) {
      b->out[i].error = describe(bad(item.context, misfit));
      continue;
    }
    const std::uint64_t rows = item.k[0].rows;
    if (c.busy || !c.waiting.empty() || c.shards.empty() || c.last_capacity_left < rows
        || c.hosts.size() != c.shards.size()) {
      ++b->pending;
      self
        ->request(caf::actor_cast<context_actor>(self), std::chrono::seconds(60),
                  decode_atom::value, item.context, std::move(item.k), std::move(item.v),
                  std::move(item.q), std::move(item.positions))
        .then(
          [b, i, finish](std::vector<wire_partial>& heads) mutable {
            b->out[i].heads = std::move(heads);
            finish();
          },
          [b, i, finish](caf::error& err) mutable {
            b->out[i].error = describe(err);
            finish();
          });
      continue;
    }
    b->sent[i] = true;
    b->context[i] = item.context;
    b->rows[i] = rows;
    b->parts[i].resize(c.shards.size());
    c.busy = true; // appends queue behind this one
    for (size_t s = 0; s < c.shards.size(); ++s) {
      const bool last = s + 1 == c.shards.size();
      calls[c.hosts[s]].push_back({c.shards[s], last ? item.k : heads_tensor{},
                                   last ? item.v : heads_tensor{}, item.q, item.positions});
      owners[c.hosts[s]].emplace_back(i, s);
    }
  }
  for (auto& [host, list] : calls) {
    ++b->pending;
    self
      ->request(st.nodes.at(host), std::chrono::seconds(60), decode_atom::value, std::move(list))
      .then(
        [b, who = owners[host], finish](std::vector<attention_reply>& replies) mutable {
          for (size_t j = 0; j < who.size(); ++j) {
            const auto [i, s] = who[j];
            auto& error = b->out[i].error;
            if (j >= replies.size()) {
              if (error.empty())
                error = "a node answered " + std::to_string(replies.size()) + " of "
                        + std::to_string(who.size()) + " shard calls";
            } else if (!replies[j].error.empty()) {
              if (error.empty())
                error = replies[j].error;
            } else {
              b->parts[i][s] = std::move(replies[j].heads);
              if (s + 1 == b->parts[i].size())
                b->appended[i] = true;
            }
          }
          finish();
        },
        [b, who = owners[host], finish](caf::error& err) mutable {
          for (const auto& [i, s] : who)
            if (b->out[i].error.empty())
              b->out[i].error = describe(err);
          finish();
        });
  }
  finish();
}

/// Global top-k in two rounds: every shard's own k best blocks per row, then the winners'
/// partials, one request per (shard, row) that reads any of its blocks.
void top_k(self_ptr self, const context_entry& c, attention_query q, promise_partial rp) {
  struct round_state {
    std::vector<std::vector<context::scored_block>> candidates; ///< per row
    size_t pending = 0;
    bool failed = false;
  };
  auto r1 = std::make_shared<round_state>();
  const auto rows = q.q.rows;
  r1->candidates.resize(rows);
  r1->pending = c.shards.size();
  auto shards = c.shards;
  for (size_t s = 0; s < shards.size(); ++s)
    self->request(shards[s], std::chrono::seconds(60), score_atom::value, q)
      .then(
        [self, r1, s, q, rp, shards, rows](const std::string& packed) mutable {
          if (r1->failed)
            return;
          try {
            auto per_row = unpack_candidates(packed, static_cast<int>(s));
            for (size_t r = 0; r < per_row.size() && r < rows; ++r)
              r1->candidates[r].insert(r1->candidates[r].end(), per_row[r].begin(), per_row[r].end());
          } catch (const std::exception& e) {
            r1->failed = true;
            rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
            return;
          }
          if (--r1->pending > 0)
            return;
          // Round two. The query was checked when it came (query_misfit); the candidates come
          // from the shards, maybe from other processes.
          matrix all_q;
          std::vector<std::int64_t> positions;
          try {
            all_q = from_wire(q.q, "query");
            positions = unpack<std::int64_t>(q.positions, "query positions");
          } catch (const std::exception& e) {
            rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
            return;
          }
          struct row_parts {
            std::vector<context::partial> parts;
          };
          auto rows_out = std::make_shared<std::vector<row_parts>>(rows);
          auto g = std::make_shared<gather_state>();
          std::vector<std::tuple<size_t, size_t, attention_query>> asks;
          for (size_t r = 0; r < rows; ++r) {
            const auto winners = context::global_top(r1->candidates[r], static_cast<int>(q.k));
            std::map<int, std::vector<std::int32_t>> by_shard;
            for (auto& w : winners)
              by_shard[w.shard].push_back(w.block);
            for (auto& [shard, blocks] : by_shard) {
              attention_query one = q;
              one.q = to_wire(matrix(all_q.row(static_cast<Eigen::Index>(r))));
              one.positions = pack(std::vector<std::int64_t>{positions[r]});
              one.blocks = pack(blocks);
              g->blocks += blocks.size();
              asks.emplace_back(static_cast<size_t>(shard), r, std::move(one));
            }
          }
          auto finish = [rows_out, rows, g, rp, d = all_q.cols()]() mutable {
            try { // the winners' partials may come from other processes, of other shapes
              std::vector<context::partial> merged;
              for (size_t r = 0; r < rows; ++r)
                merged.push_back((*rows_out)[r].parts.empty()
                                   ? context::empty_partial(1, d)
                                   : context::merge((*rows_out)[r].parts));
              auto w = to_wire(context::stack_rows(merged));
              w.blocks_read = g->blocks;
              rp.deliver(std::move(w));
            } catch (const std::exception& e) {
              rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
            }
          };
          g->pending = asks.size();
          if (asks.empty()) {
            finish();
            return;
          }
          for (auto& [shard, r, one] : asks)
            self->request(shards[shard], std::chrono::seconds(60), query_atom::value, one)
              .then(
                [g, rows_out, r = r, finish, rp](wire_partial& w) mutable {
                  if (g->failed)
                    return;
                  try {
                    (*rows_out)[r].parts.push_back(from_wire(w));
                  } catch (const std::exception& e) {
                    g->failed = true;
                    rp.deliver(make_mesh_error(mesh_errc::internal, e.what()));
                    return;
                  }
                  if (--g->pending == 0)
                    finish();
                },
                [g, rp](caf::error& err) mutable {
                  if (!g->failed) {
                    g->failed = true;
                    rp.deliver(std::move(err));
                  }
                });
        },
        [r1, rp](caf::error& err) mutable {
          if (!r1->failed) {
            r1->failed = true;
            rp.deliver(std::move(err));
          }
        });
}

} // namespace

context_actor::behavior_type context_behavior(context_actor::stateful_pointer<context_state> self,
                                              std::vector<node_agent_actor> nodes,
                                              size_t local, shard_placement placement) {
  self->state.nodes = std::move(nodes);
  self->state.local = local;
  self->state.placement = placement;
  return {
    [=](join_atom, std::uint32_t n, node_agent_actor agent) {
      auto& nodes = self->state.nodes;
      if (n >= nodes.size())
        nodes.resize(n + 1);
      nodes[n] = std::move(agent);
    },
    [=](stats_atom) {
      // Positions held per node: every context's shards, where they live.
      std::vector<std::uint64_t> held(self->state.nodes.size(), 0);
      for (const auto& [id, c] : self->state.contexts)
        for (size_t s = 0; s < c.shards.size() && s < c.hosts.size(); ++s) {
          const auto end = s + 1 < c.begins.size() ? c.begins[s + 1] : c.length;
          held.at(c.hosts[s]) += end - c.begins[s];
        }
      return held;
    },
    [=](create_atom, const context_spec& spec) -> caf::result<std::uint64_t> {
      if (spec.heads == 0 || spec.head_dim == 0 || spec.block_size == 0 || spec.shard_size == 0)
        return make_mesh_error(mesh_errc::bad_request,
                               "context: heads, head_dim, block_size and shard_size must be >= 1");
      if (auto misfit = spec_misfit(spec); !misfit.empty())
        return make_mesh_error(mesh_errc::bad_request, "context: " + misfit);
      const auto id = ++self->state.next_id;
      self->state.contexts[id].spec = spec;
      return id;
    },
    [=](append_atom, std::uint64_t id, heads_tensor& k,
        heads_tensor& v) -> caf::result<std::uint64_t> {
      auto it = self->state.contexts.find(id);
      if (it == self->state.contexts.end())
        return no_context(id);
      auto& c = it->second;
      if (k.size() != c.spec.heads || v.size() != c.spec.heads || k.empty()
          || k[0].rows != v[0].rows)
        return make_mesh_error(mesh_errc::bad_request,
                               "context " + std::to_string(id) + ": append one key and one value "
                                 "tensor per head (" + std::to_string(c.spec.heads)
                                 + "), all with the same rows");
      // Checked whole before any of it goes: an append that spans shards is sliced, and one
      // refused by its second shard would leave the first holding part of it.
      if (auto m = heads_misfit(k, "keys", "keys and values", k[0].rows, c.spec.head_dim);
          !m.empty())
        return bad(id, "append: " + m);
      if (auto m = heads_misfit(v, "values", "keys and values", k[0].rows, c.spec.head_dim);
          !m.empty())
        return bad(id, "append: " + m);
      auto rp = self->make_response_promise<std::uint64_t>();
      auto kp = std::make_shared<heads_tensor>(std::move(k));
      auto vp = std::make_shared<heads_tensor>(std::move(v));
      const std::uint64_t total = kp->at(0).rows;
      c.waiting.push_back([self, id, kp, vp, total, rp] { // run by run_next: id exists
        self->state.contexts.at(id).busy = true;
        append_from(self, id, kp, vp, 0, total, rp);
      });
      run_next(self, id);
      return rp;
    },
    [=](query_atom, std::uint64_t id, attention_query& q) -> caf::result<wire_partial> {
      auto it = self->state.contexts.find(id);
      if (it == self->state.contexts.end())
        return no_context(id);
      auto& c = it->second;
      if (c.shards.empty())
        return make_mesh_error(mesh_errc::bad_request,
                               "context " + std::to_string(id) + " is empty");
      if (auto misfit = query_misfit(c.spec, q); !misfit.empty())
        return bad(id, misfit);
      auto rp = self->make_response_promise<wire_partial>();
      if (q.mode == attention_mode::global_top_k)
        top_k(self, c, std::move(q), rp);
      else
        full_or_budget(self, c, std::move(q), rp);
      return rp;
    },
    [=](decode_atom, std::uint64_t id, heads_tensor& k, heads_tensor& v, heads_tensor& q,
        std::string& positions) -> caf::result<std::vector<wire_partial>> {
      auto it = self->state.contexts.find(id);
      if (it == self->state.contexts.end())
        return no_context(id);
      auto& c = it->second;
      if (auto misfit = decode_misfit(c.spec, k, v, q, positions); !misfit.empty())
        return bad(id, misfit);
      auto rp = self->make_response_promise<std::vector<wire_partial>>();
      if (!c.busy && c.waiting.empty() && !c.shards.empty()
          && c.last_capacity_left >= k[0].rows) {
        decode_round(self, id, std::move(k), std::move(v), q, positions, rp);
        return rp;
      }
      // A new shard is due (or appends are queued): append as append_atom does, then attend.
      auto qp = std::make_shared<heads_tensor>(std::move(q));
      self->request(caf::actor_cast<context_actor>(self), std::chrono::seconds(60), append_atom::value,
                    id, std::move(k), std::move(v))
        .then(
          [self, id, qp, positions, rp](std::uint64_t) mutable {
            if (self->state.contexts.count(id) == 0) {
              rp.deliver(no_context(id));
              return;
            }
            decode_round(self, id, {}, {}, *qp, positions, rp);
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](decode_atom, std::vector<decode_item>& items) -> caf::result<std::vector<attention_reply>> {
      auto rp = self->make_response_promise<std::vector<attention_reply>>();
      decode_batch(self, std::move(items), rp);
      return rp;
    },
    [=](drop_atom, std::uint64_t id) -> caf::result<ok_atom> {
      auto it = self->state.contexts.find(id);
      if (it == self->state.contexts.end())
        return no_context(id);
      for (auto& s : it->second.shards)
        self->send_exit(s, caf::exit_reason::user_shutdown);
      self->state.contexts.erase(it);
      return ok_atom::value;
    },
  };
}

} // namespace eoe::actors
