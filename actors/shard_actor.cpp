#include "actors/shard_actor.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "context_store/selection.hpp"
#include "experts/base/parallel.hpp"

#include <cstring>
#include <limits>
#include <set>

namespace eoe::actors {

std::string pack_candidates(const std::vector<std::vector<context::scored_block>>& rows) {
  std::string out;
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  for (auto& row : rows) {
    const auto n = static_cast<std::uint32_t>(row.size());
    put(&n, 4);
    for (auto& c : row) {
      put(&c.score, 4);
      put(&c.block, 4);
    }
  }
  return out;
}

std::vector<std::vector<context::scored_block>> unpack_candidates(const std::string& bytes,
                                                                   int shard) {
  std::vector<std::vector<context::scored_block>> rows;
  size_t at = 0;
  auto get = [&](void* p, size_t n) {
    if (at + n > bytes.size())
      throw std::invalid_argument("shard candidates: truncated at byte " + std::to_string(at));
    std::memcpy(p, bytes.data() + at, n);
    at += n;
  };
  while (at < bytes.size()) {
    std::uint32_t n = 0;
    get(&n, 4);
    auto& row = rows.emplace_back();
    for (std::uint32_t i = 0; i < n; ++i) {
      context::scored_block c;
      c.shard = shard;
      get(&c.score, 4);
      get(&c.block, 4);
      row.push_back(c);
    }
  }
  return rows;
}

namespace {

struct decoded_query {
  matrix q;
  std::vector<std::int64_t> positions;
};

/// Query positions the causal mask can take: past 2^62, position - begin + 1 would overflow.
void check_positions(const std::vector<std::int64_t>& positions) {
  constexpr std::int64_t limit = std::int64_t{1} << 62;
  for (size_t r = 0; r < positions.size(); ++r)
    if (positions[r] < 0 || positions[r] >= limit)
      throw std::invalid_argument("query position " + std::to_string(positions[r]) + " (row "
                                  + std::to_string(r) + ") is outside [0, 2^62)");
}

decoded_query decode_query(const context::kv_shard& s, const attention_query& a) {
  if (a.head >= static_cast<std::uint32_t>(s.shape().heads))
    throw std::invalid_argument("query head " + std::to_string(a.head) + ", the shard has "
                                + std::to_string(s.shape().heads));
  if (a.q.rows > max_query_rows)
    throw std::invalid_argument("a query of " + std::to_string(a.q.rows) + " rows: at most "
                                + std::to_string(max_query_rows) + " per query");
  decoded_query d{from_wire(a.q, "query"), unpack<std::int64_t>(a.positions, "query positions")};
  if (static_cast<Eigen::Index>(d.positions.size()) != d.q.rows())
    throw std::invalid_argument("query: " + std::to_string(d.positions.size()) + " positions for "
                                + std::to_string(d.q.rows()) + " rows");
  check_positions(d.positions);
  if (static_cast<std::uint8_t>(a.mode) > 2)
    throw std::invalid_argument("query mode " + to_string(a.mode)
                                + ": 0 full, 1 global top-k, 2 per-shard budget");
  if (static_cast<std::uint8_t>(a.score) > 1)
    throw std::invalid_argument("query score " + std::to_string(static_cast<int>(a.score))
                                + ": 0 Quest bound, 1 MoBA mean key");
  if (a.mode == attention_mode::shard_budget && !(a.fraction >= 0.0 && a.fraction <= 1.0)) // NaN too
    throw std::invalid_argument("query fraction " + std::to_string(a.fraction)
                                + " is outside [0, 1]");
  if (a.k > static_cast<std::uint32_t>(std::numeric_limits<int>::max()))
    throw std::invalid_argument("query k = " + std::to_string(a.k) + " does not fit an int");
  return d;
}

/// Appends wire keys and values (one tensor per head each) to s.
void append_wire(context::kv_shard& s, const heads_tensor& k, const heads_tensor& v) {
  std::vector<matrix> ks, vs;
  for (auto& t : k)
    ks.push_back(from_wire(t, "appended keys"));
  for (auto& t : v)
    vs.push_back(from_wire(t, "appended values"));
  s.append(ks, vs);
}

} // namespace

hosted_shard::hosted_shard(const context_spec& spec, std::uint64_t begin, std::uint64_t capacity)
  : shard(context::shard_shape{static_cast<int>(spec.heads), static_cast<int>(spec.head_dim),
                               static_cast<int>(spec.block_size)},
          static_cast<std::int64_t>(begin), static_cast<std::int64_t>(capacity)) {}

std::vector<wire_partial> decode_on(hosted_shard& h, const heads_tensor& k, const heads_tensor& v,
                                    const heads_tensor& q, const std::string& positions) {
  const std::lock_guard lock{h.mu};
  auto& s = h.shard;
  // Everything is checked before the append: a call refused after it would leave the shard
  // holding rows its context composer does not count.
  const auto pos = unpack<std::int64_t>(positions, "query positions");
  check_positions(pos);
  if (q.size() != static_cast<size_t>(s.shape().heads))
    throw std::invalid_argument(std::to_string(q.size()) + " query heads, the shard has "
                                + std::to_string(s.shape().heads));
  std::vector<matrix> qs;
  for (const auto& t : q) {
    qs.push_back(from_wire(t, "queries"));
    if (static_cast<Eigen::Index>(pos.size()) != qs.back().rows())
      throw std::invalid_argument(std::to_string(pos.size()) + " positions for "
                                  + std::to_string(qs.back().rows()) + " query rows");
    if (qs.back().cols() != s.shape().head_dim)
      throw std::invalid_argument("queries of width " + std::to_string(qs.back().cols())
                                  + ", the heads have " + std::to_string(s.shape().head_dim));
  }
  if (!k.empty())
    append_wire(s, k, v);
  std::vector<wire_partial> out;
  for (size_t head = 0; head < qs.size(); ++head) {
    out.push_back(to_wire(s.attend(static_cast<int>(head), qs[head], pos, true)));
    out.back().blocks_read = static_cast<std::uint64_t>(s.blocks());
  }
  return out;
}

void decode_calls(std::span<const std::shared_ptr<hosted_shard>> shards,
                  std::span<const shard_call> calls, std::vector<attention_reply>& out,
                  std::int64_t parallel_from) {
  out.resize(calls.size());
  std::set<const hosted_shard*> distinct;
  std::int64_t held = 0; // the positions the calls' shards hold: the work, roughly
  size_t present = 0;
  for (const auto& h : shards) {
    if (!h)
      continue;
    ++present;
    distinct.insert(h.get());
    const std::lock_guard lock{h->mu};
    held += h->shard.size();
  }
  const auto run = [&](size_t i) {
    if (!shards[i])
      return;
    try {
      out[i].heads = decode_on(*shards[i], calls[i].k, calls[i].v, calls[i].q, calls[i].positions);
    } catch (const std::exception& e) {
      out[i].error = std::string{"shard decode: "} + e.what();
    }
  };
  const bool parallel = distinct.size() == present && held >= parallel_from;
  experts::parallel_for(calls.size(), run, parallel ? experts::loop_threads() : 1);
}

shard_actor::behavior_type shard_behavior(shard_actor::stateful_pointer<shard_state> self,
                                          std::shared_ptr<hosted_shard> hosted) {
  self->state.hosted = std::move(hosted);
  return {
    [=](append_atom, const heads_tensor& k, const heads_tensor& v) -> caf::result<std::uint64_t> {
      auto& h = *self->state.hosted;
      const std::lock_guard lock{h.mu};
      try {
        append_wire(h.shard, k, v);
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request, std::string{"shard append: "} + e.what());
      }
      return static_cast<std::uint64_t>(h.shard.size());
    },
    [=](decode_atom, const heads_tensor& k, const heads_tensor& v, const heads_tensor& q,
        const std::string& positions) -> caf::result<std::vector<wire_partial>> {
      try {
        return decode_on(*self->state.hosted, k, v, q, positions);
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request, std::string{"shard decode: "} + e.what());
      }
    },
    [=](query_atom, const attention_query& a) -> caf::result<wire_partial> {
      const std::lock_guard lock{self->state.hosted->mu};
      const auto& s = self->state.hosted->shard;
      try {
        const auto d = decode_query(s, a);
        const auto head = static_cast<int>(a.head);
        const auto kind = a.score;
        if (!a.blocks.empty()) {
          const auto blocks = unpack<std::int32_t>(a.blocks, "query blocks");
          auto w = to_wire(s.attend_blocks(head, d.q, d.positions, a.causal, blocks));
          w.blocks_read = blocks.size();
          return w;
        }
        if (a.mode != attention_mode::shard_budget) {
          auto w = to_wire(s.attend(head, d.q, d.positions, a.causal));
          w.blocks_read = static_cast<std::uint64_t>(s.blocks());
          return w;
        }
        // Budget: every row reads its own best blocks of this shard.
        const auto scores = s.score_blocks(head, d.q, d.positions, a.causal, kind);
        std::vector<context::partial> rows;
        std::uint64_t read = 0;
        for (Eigen::Index r = 0; r < d.q.rows(); ++r) {
          const auto blocks = context::shard_budget(scores, r, a.fraction);
          read += blocks.size();
          const matrix one = d.q.row(r);
          rows.push_back(s.attend_blocks(head, one, std::span{&d.positions[r], 1}, a.causal, blocks));
        }
        auto w = to_wire(context::stack_rows(rows));
        w.blocks_read = read;
        return w;
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request, std::string{"shard query: "} + e.what());
      }
    },
    [=](score_atom, const attention_query& a) -> caf::result<std::string> {
      const std::lock_guard lock{self->state.hosted->mu};
      const auto& s = self->state.hosted->shard;
      try {
        const auto d = decode_query(s, a);
        const auto kind = a.score;
        const auto scores = s.score_blocks(static_cast<int>(a.head), d.q, d.positions, a.causal, kind);
        std::vector<std::vector<context::scored_block>> rows;
        for (Eigen::Index r = 0; r < d.q.rows(); ++r)
          rows.push_back(context::shard_top(scores, r, 0, static_cast<int>(a.k)));
        return pack_candidates(rows);
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request, std::string{"shard score: "} + e.what());
      }
    },
  };
}

} // namespace eoe::actors
