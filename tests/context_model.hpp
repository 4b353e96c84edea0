#pragma once
// A long context for the context tests, and the answers the math gives for it, to compare
// what the shard actors and the context composer return (in one process or many).

#include "actors/interfaces.hpp"
#include "actors/wire.hpp"
#include "context_store/kv_shard.hpp"
#include "context_store/selection.hpp"
#include "experts/base/rng.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

namespace eoe::test {

struct test_context {
  actors::context_spec spec{1, 16, 8, 100};
  std::int64_t length = 1000;
  matrix k, v;

  test_context() {
    experts::rng r{42};
    k.resize(length, spec.head_dim);
    v.resize(length, spec.head_dim);
    for (Eigen::Index i = 0; i < k.size(); ++i) {
      k.data()[i] = 2.0f * static_cast<float>(r.normal());
      v.data()[i] = static_cast<float>(r.normal());
    }
  }

  /// The same context as the math holds it: shards of spec.shard_size.
  std::vector<context::kv_shard> shards() const {
    std::vector<context::kv_shard> out;
    for (std::int64_t b = 0; b < length; b += static_cast<std::int64_t>(spec.shard_size)) {
      const auto n = std::min<std::int64_t>(static_cast<std::int64_t>(spec.shard_size), length - b);
      context::kv_shard s{{1, static_cast<int>(spec.head_dim), static_cast<int>(spec.block_size)},
                          b, static_cast<std::int64_t>(spec.shard_size)};
      const matrix ks = k.middleRows(b, n), vs = v.middleRows(b, n);
      s.append(std::span<const matrix>{&ks, 1}, std::span<const matrix>{&vs, 1});
      out.push_back(std::move(s));
    }
    return out;
  }

  /// Appends the whole context through the composer in uneven chunks.
  std::uint64_t fill(caf::scoped_actor& self, const actors::context_actor& ctx) const {
    std::uint64_t id = 0;
    self->request(ctx, std::chrono::seconds(10), actors::create_atom::value, spec)
      .receive([&](std::uint64_t i) { id = i; }, [&](const caf::error& e) { FAIL(caf::to_string(e)); });
    for (std::int64_t at = 0; at < length; at += 137) {
      const auto n = std::min<std::int64_t>(137, length - at);
      actors::heads_tensor ks{actors::to_wire(matrix(k.middleRows(at, n)))};
      actors::heads_tensor vs{actors::to_wire(matrix(v.middleRows(at, n)))};
      self->request(ctx, std::chrono::seconds(30), actors::append_atom::value, id, ks, vs)
        .receive([&](std::uint64_t len) { CHECK(len == static_cast<std::uint64_t>(at + n)); },
                 [&](const caf::error& e) { FAIL(caf::to_string(e)); });
    }
    return id;
  }
};

inline matrix queries(Eigen::Index rows, std::uint64_t seed) {
  experts::rng r{seed};
  matrix q(rows, 16);
  for (Eigen::Index i = 0; i < q.size(); ++i)
    q.data()[i] = 2.0f * static_cast<float>(r.normal());
  return q;
}

inline actors::attention_query query_of(const matrix& q, const std::vector<std::int64_t>& pos,
                                        std::uint8_t mode, std::uint32_t k = 0,
                                        double fraction = 0) {
  actors::attention_query a;
  a.q = actors::to_wire(q);
  a.positions = actors::pack(pos);
  a.causal = true;
  a.mode = static_cast<actors::attention_mode>(mode); // 3 and up: a mode that is none
  a.k = k;
  a.fraction = fraction;
  return a;
}

/// What the math answers for each mode.
inline context::partial expected(const std::vector<context::kv_shard>& shards, const matrix& q,
                                 const std::vector<std::int64_t>& pos, std::uint8_t mode,
                                 int k, double fraction) {
  std::vector<context::partial> rows;
  for (Eigen::Index r = 0; r < q.rows(); ++r) {
    const matrix one = q.row(r);
    const std::vector<std::int64_t> p{pos[r]};
    std::vector<context::partial> parts;
    if (mode == 1) {
      std::vector<context::scored_block> cands;
      for (size_t s = 0; s < shards.size(); ++s)
        for (auto& c : context::shard_top(
               shards[s].score_blocks(0, one, p, true, context::block_score::quest), 0,
               static_cast<int>(s), k))
          cands.push_back(c);
      const auto winners = context::global_top(cands, k);
      for (size_t s = 0; s < shards.size(); ++s) {
        std::vector<int> blocks;
        for (auto& w : winners)
          if (w.shard == static_cast<int>(s))
            blocks.push_back(w.block);
        if (!blocks.empty())
          parts.push_back(shards[s].attend_blocks(0, one, p, true, blocks));
      }
    } else {
      for (auto& s : shards) {
        if (mode == 2) {
          const auto scores = s.score_blocks(0, one, p, true, context::block_score::quest);
          parts.push_back(s.attend_blocks(0, one, p, true, context::shard_budget(scores, 0, fraction)));
        } else {
          parts.push_back(s.attend(0, one, p, true));
        }
      }
    }
    rows.push_back(parts.empty() ? context::empty_partial(1, 16) : context::merge(parts));
  }
  return context::stack_rows(rows);
}

} // namespace eoe::test
