// The context store: sharded partial attention merged against a dense float64 reference
// (relative error <= 1e-5) for 1..16 shards, uneven and empty shards, causal boundaries,
// single queries and blocks of queries; an order-independent merge; block summaries and the
// Quest bound; sparse selection.

#include "context_store/block_bounds.hpp"
#include "context_store/decode.hpp"
#include "context_store/kv_shard.hpp"
#include "context_store/selection.hpp"
#include "experts/base/rng.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

using namespace eoe;
using namespace eoe::context;

namespace {

matrix randn(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, float scale = 1.0f) {
  experts::rng r{seed};
  matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i)
    m.data()[i] = scale * static_cast<float>(r.normal());
  return m;
}

/// Dense attention in double over keys at positions 0..n-1.
Eigen::MatrixXd reference(const matrix& q, const std::vector<std::int64_t>& pos, const matrix& k,
                          const matrix& v, bool causal) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(k.cols()));
  Eigen::MatrixXd out = Eigen::MatrixXd::Zero(q.rows(), v.cols());
  for (Eigen::Index r = 0; r < q.rows(); ++r) {
    const auto n = causal ? std::min<Eigen::Index>(k.rows(), pos[r] + 1) : k.rows();
    if (n <= 0)
      continue;
    Eigen::VectorXd s(n);
    for (Eigen::Index j = 0; j < n; ++j)
      s(j) = q.row(r).cast<double>().dot(k.row(j).cast<double>()) * scale;
    const double m = s.maxCoeff();
    Eigen::VectorXd p = (s.array() - m).exp();
    p /= p.sum();
    for (Eigen::Index j = 0; j < n; ++j)
      out.row(r) += p(j) * v.row(j).cast<double>();
  }
  return out;
}

double rel_error(const matrix& got, const Eigen::MatrixXd& want) {
  return (got.cast<double>() - want).cwiseAbs().maxCoeff() / std::max(1e-30, want.cwiseAbs().maxCoeff());
}

/// Splits n positions into shards at the given cut points and returns them filled.
std::vector<kv_shard> shards_of(const matrix& k, const matrix& v, std::vector<std::int64_t> cuts,
                                shard_shape shape) {
  std::vector<kv_shard> out;
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(k.rows());
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const auto n = cuts[i + 1] - cuts[i];
    kv_shard s{shape, cuts[i], std::max<std::int64_t>(n, 1)};
    if (n > 0) {
      const matrix ks = k.middleRows(cuts[i], n), vs = v.middleRows(cuts[i], n);
      s.append(std::span<const matrix>{&ks, 1}, std::span<const matrix>{&vs, 1});
    }
    out.push_back(std::move(s));
  }
  return out;
}

partial merged(const std::vector<kv_shard>& shards, const matrix& q,
               const std::vector<std::int64_t>& pos, bool causal) {
  std::vector<partial> parts;
  for (auto& s : shards)
    parts.push_back(s.attend(0, q, pos, causal));
  return merge(parts);
}

} // namespace

TEST_CASE("sharded attention equals dense attention for 1..16 even shards", "[context]") {
  const shard_shape shape{1, 32, 16};
  const auto k = randn(1000, 32, 1), v = randn(1000, 32, 2), q = randn(5, 32, 3);
  const std::vector<std::int64_t> pos(5, 999);
  const auto want = reference(q, pos, k, v, false);
  for (int n = 1; n <= 16; ++n) {
    std::vector<std::int64_t> cuts;
    for (int i = 1; i < n; ++i)
      cuts.push_back(1000 * i / n);
    INFO(n << " shards");
    CHECK(rel_error(merged(shards_of(k, v, cuts, shape), q, pos, false).out, want) <= 1e-5);
  }
}

TEST_CASE("uneven and empty shards, causal boundaries, single queries and blocks", "[context]") {
  const shard_shape shape{1, 16, 8};
  const auto k = randn(300, 16, 4, 2.0f), v = randn(300, 16, 5);
  // Uneven cuts, including empty shards (repeated cut points) and a one-position shard.
  const std::vector<std::int64_t> cuts{0, 0, 7, 8, 150, 150, 151, 299};
  const auto shards = shards_of(k, v, cuts, shape);
  CHECK(shards.size() == 9);
  // Queries on both sides of every boundary, a single query, and a block of them.
  std::vector<std::int64_t> pos{0, 6, 7, 8, 9, 149, 150, 151, 298, 299};
  const auto q = randn(static_cast<Eigen::Index>(pos.size()), 16, 6, 2.0f);
  CHECK(rel_error(merged(shards, q, pos, true).out, reference(q, pos, k, v, true)) <= 1e-5);
  CHECK(rel_error(merged(shards, q, pos, false).out, reference(q, pos, k, v, false)) <= 1e-5);
  for (size_t i = 0; i < pos.size(); ++i) {
    const matrix one = q.row(static_cast<Eigen::Index>(i));
    const std::vector<std::int64_t> p{pos[i]};
    CHECK(rel_error(merged(shards, one, p, true).out, reference(one, p, k, v, true)) <= 1e-5);
  }
  // A shard wholly after a causal query sees nothing: max -inf, sum 0, output 0.
  const matrix first = q.row(0);
  const std::vector<std::int64_t> p0{0};
  auto late = shards[4].attend(0, first, p0, true);
  CHECK(late.max[0] == no_key);
  CHECK(late.sum[0] == 0.0f);
  CHECK(late.out.isZero());
}

TEST_CASE("the merge is order-independent and keeps rows nobody sees empty", "[context]") {
  const shard_shape shape{1, 8, 4};
  const auto k = randn(64, 8, 7, 3.0f), v = randn(64, 8, 8);
  auto shards = shards_of(k, v, {5, 20, 21, 40}, shape);
  std::vector<std::int64_t> pos{3, 63};
  const auto q = randn(2, 8, 9, 3.0f);
  std::vector<partial> parts;
  for (auto& s : shards)
    parts.push_back(s.attend(0, q, pos, true));
  const auto a = merge(parts);
  std::vector<size_t> order(parts.size());
  std::iota(order.begin(), order.end(), 0);
  experts::rng r{10};
  for (int trial = 0; trial < 20; ++trial) {
    std::shuffle(order.begin(), order.end(), std::mt19937{static_cast<unsigned>(r.next())});
    std::vector<partial> shuffled;
    for (auto i : order)
      shuffled.push_back(parts[i]);
    const auto b = merge(shuffled);
    CHECK((a.out - b.out).cwiseAbs().maxCoeff() <= 1e-6f * a.out.cwiseAbs().maxCoeff());
  }
  // Merging merges is the same as merging everything.
  const partial left = merge(std::span<const partial>{parts.data(), 2});
  const partial right = merge(std::span<const partial>{parts.data() + 2, parts.size() - 2});
  const partial both[] = {left, right};
  CHECK((merge(both).out - a.out).cwiseAbs().maxCoeff() <= 1e-6f);
  const partial nothing[] = {empty_partial(2, 8), empty_partial(2, 8)};
  auto none = merge(nothing);
  CHECK(none.out.isZero());
  CHECK(none.max[0] == no_key);
}

TEST_CASE("block summaries, and the Quest score bounds every key of its block", "[context]") {
  const shard_shape shape{2, 12, 10};
  kv_shard s{shape, 100, 95};
  const matrix k0 = randn(95, 12, 11), k1 = randn(95, 12, 12), v = randn(95, 12, 13);
  for (auto [from, n] : {std::pair<Eigen::Index, Eigen::Index>{0, 40}, {40, 55}}) {
    const matrix ks[] = {k0.middleRows(from, n), k1.middleRows(from, n)};
    const matrix vs[] = {v.middleRows(from, n), v.middleRows(from, n)};
    s.append(ks, vs);
  }
  CHECK(s.size() == 95);
  CHECK(s.end() == 195);
  CHECK(s.blocks() == 10);
  const auto q = randn(6, 12, 14, 2.0f);
  const std::vector<std::int64_t> pos(6, 1000);
  const float scale = 1.0f / std::sqrt(12.0f);
  for (int head = 0; head < 2; ++head) {
    const matrix& k = head == 0 ? k0 : k1;
    const auto quest = s.score_blocks(head, q, pos, true, block_score::quest);
    const auto moba = s.score_blocks(head, q, pos, true, block_score::moba);
    for (Eigen::Index r = 0; r < q.rows(); ++r)
      for (int b = 0; b < 10; ++b) {
        const auto n = std::min<Eigen::Index>(10, 95 - b * 10);
        float best = no_key;
        Eigen::RowVectorXf mean = Eigen::RowVectorXf::Zero(12);
        for (Eigen::Index j = 0; j < n; ++j) {
          best = std::max(best, q.row(r).dot(k.row(b * 10 + j)) * scale);
          mean += k.row(b * 10 + j);
        }
        CHECK(quest(r, b) >= best - 1e-5f); // an upper bound of every score in the block
        CHECK(moba(r, b) == Approx(q.row(r).dot(mean / static_cast<float>(n)) * scale).margin(1e-5));
      }
    // Reading every block is reading everything.
    std::vector<int> all(10);
    std::iota(all.begin(), all.end(), 0);
    const auto full = s.attend(head, q, pos, true);
    const auto blocks = s.attend_blocks(head, q, pos, true, all);
    CHECK((full.out - blocks.out).cwiseAbs().maxCoeff() <= 1e-6f);
  }
  // Causal: a block that starts after the query position scores -inf.
  const std::vector<std::int64_t> early(6, 125);
  const auto causal = s.score_blocks(0, q, early, true, block_score::quest);
  CHECK(causal(0, 2) != no_key); // positions 120..129
  CHECK(causal(0, 3) == no_key); // positions 130..139
  // Bad input is named.
  const matrix wrong[] = {randn(3, 11, 1), randn(3, 11, 1)};
  CHECK_THROWS_WITH(s.append(wrong, wrong), Catch::Contains("head 0 needs (3, 12)"));
  const matrix more[] = {randn(1, 12, 1), randn(1, 12, 1)};
  CHECK_THROWS_WITH(s.append(more, more), Catch::Contains("1 positions do not fit (95 of 95 used)"));
  CHECK_THROWS_AS(s.attend_blocks(0, q, pos, true, std::vector<int>{3, 3}), std::invalid_argument);
}

TEST_CASE("a decode step over any set of key ranges equals dense attention over those keys",
          "[context]") {
  // Ranges of every kind the side-by-side walk cuts differently: one long range (halved into
  // lanes), fewer ranges than streams, a partial last group, pieces longer than a piece and
  // of one key, in any order; d = 64 (an unrolled instance) and d = 20 (the generic one).
  const std::vector<std::vector<key_range>> cases{
    {{0, 3000}},
    {{10, 11}},
    {{2000, 2900}, {5, 700}},
    {{0, 64}, {128, 192}, {640, 704}},
    {{0, 64}, {128, 192}, {640, 704}, {900, 901}},
    {{2999, 3000}, {0, 600}, {700, 710}, {1000, 1257}, {1300, 1301}, {1400, 2400}, {2500, 2563}},
  };
  for (int d : {32, 64, 128, 20}) { // each compiled width, and one that is not
    const auto k = randn(3000, d, 40 + d, 1.5f), v = randn(3000, d, 41 + d);
    const auto q = randn(1, d, 42 + d, 1.5f);
    for (const auto& ranges : cases) {
      // The reference: softmax attention in double over exactly the listed rows.
      std::vector<Eigen::Index> rows;
      for (auto r : ranges)
        for (auto j = r.begin; j < r.end; ++j)
          rows.push_back(j);
      matrix ks(static_cast<Eigen::Index>(rows.size()), d), vs(ks.rows(), d);
      for (size_t i = 0; i < rows.size(); ++i) {
        ks.row(static_cast<Eigen::Index>(i)) = k.row(rows[i]);
        vs.row(static_cast<Eigen::Index>(i)) = v.row(rows[i]);
      }
      const auto want = reference(q, {0}, ks, vs, false);
      matrix out = matrix::Zero(1, d);
      decode_state st{out.data(), no_key, 0.0f};
      decode_step(k.data(), v.data(), d, q.data(), 1.0f / std::sqrt(static_cast<float>(d)),
                  ranges, st);
      out /= st.sum;
      INFO("d = " << d << ", " << ranges.size() << " ranges");
      CHECK(rel_error(out, want) <= 1e-5);
      // The running max is the largest scaled score read.
      const double top = (ks.cast<double>() * q.cast<double>().transpose()).maxCoeff()
                         / std::sqrt(static_cast<double>(d));
      CHECK(std::abs(st.max - top) <= 1e-5 * std::max(1.0, std::abs(top)));
    }
  }
}

TEST_CASE("attention over selected blocks equals dense attention over their keys", "[context]") {
  const shard_shape shape{2, 64, 16};
  const auto k0 = randn(1000, 64, 50), v0 = randn(1000, 64, 51);
  const auto k1 = randn(1000, 64, 52, 2.0f), v1 = randn(1000, 64, 53);
  kv_shard s{shape, 500, 1000};
  const std::vector<matrix> ks{k0, k1}, vs{v0, v1};
  s.append(ks, vs);
  // Scattered blocks, adjacent runs, the partial last block (positions 992..999).
  const std::vector<int> blocks{61, 3, 4, 5, 40, 0, 22, 23, 9, 50, 62};
  std::vector<std::int64_t> pos{1499, 1200, 700};
  const auto q = randn(3, 64, 54, 1.5f);
  for (int head : {0, 1}) {
    const auto& k = head == 0 ? k0 : k1;
    const auto& v = head == 0 ? v0 : v1;
    for (bool causal : {true, false}) {
      // The reference: each query row over the selected blocks' keys it may see.
      Eigen::MatrixXd want(3, 64);
      for (Eigen::Index r = 0; r < 3; ++r) {
        std::vector<Eigen::Index> rows;
        for (int b : blocks)
          for (Eigen::Index j = b * 16; j < std::min<Eigen::Index>(1000, (b + 1) * 16); ++j)
            if (!causal || 500 + j <= pos[static_cast<size_t>(r)])
              rows.push_back(j);
        matrix kr(static_cast<Eigen::Index>(rows.size()), 64), vr(kr.rows(), 64);
        for (size_t i = 0; i < rows.size(); ++i) {
          kr.row(static_cast<Eigen::Index>(i)) = k.row(rows[i]);
          vr.row(static_cast<Eigen::Index>(i)) = v.row(rows[i]);
        }
        want.row(r) = reference(q.row(r), {0}, kr, vr, false);
      }
      // A block of queries (tiled GEMMs) and each query alone (the decode step).
      CHECK(rel_error(s.attend_blocks(head, q, pos, causal, blocks).out, want) <= 1e-5);
      for (Eigen::Index r = 0; r < 3; ++r) {
        const matrix one = q.row(r);
        const std::vector<std::int64_t> p{pos[static_cast<size_t>(r)]};
        CHECK(rel_error(s.attend_blocks(head, one, p, causal, blocks).out, want.row(r)) <= 1e-5);
      }
    }
  }
}

TEST_CASE("8-bit block bounds enclose the exact ones, within a step", "[context]") {
  const int d = 37; // not a multiple of the eight running sums
  block_bounds bb{5, d};
  experts::rng r{60};
  std::vector<Eigen::RowVectorXf> mins, maxs;
  for (int b = 0; b < 5; ++b) {
    // Blocks of very different ranges, one constant zero block, one of a single sign.
    const auto keys = randn(9, d, r.next(), b == 1 ? 1e-3f : 1.0f + 10.0f * b);
    Eigen::RowVectorXf lo = keys.colwise().minCoeff(), hi = keys.colwise().maxCoeff();
    if (b == 2)
      lo.setZero(), hi.setZero();
    if (b == 3)
      lo = lo.cwiseAbs(), hi = lo + hi.cwiseAbs();
    bb.set(b, lo, hi);
    mins.push_back(lo);
    maxs.push_back(hi);
  }
  const auto q = randn(1, d, 61, 2.0f);
  std::vector<float> got(5);
  bb.score(q.data(), 0.5f, 5, got.data());
  for (int b = 0; b < 5; ++b) {
    const auto [hi, lo] = bb.bounds(b);
    const double step = std::max(maxs[b].cwiseAbs().maxCoeff(), mins[b].cwiseAbs().maxCoeff()) / 127.0 * 1.01;
    INFO("block " << b);
    CHECK((hi - maxs[b]).minCoeff() >= 0.0f);
    CHECK((mins[b] - lo).minCoeff() >= 0.0f);
    CHECK((hi - maxs[b]).maxCoeff() <= step);
    CHECK((mins[b] - lo).maxCoeff() <= step);
    // The score is q+ . hi + q- . lo of the rounded bounds, scaled, and bounds the exact one.
    double want = 0, exact = 0;
    for (int i = 0; i < d; ++i) {
      want += q(0, i) > 0 ? double(q(0, i)) * hi[i] : double(q(0, i)) * lo[i];
      exact += q(0, i) > 0 ? double(q(0, i)) * maxs[b][i] : double(q(0, i)) * mins[b][i];
    }
    CHECK(got[static_cast<size_t>(b)] == Approx(0.5 * want).margin(1e-5).epsilon(1e-5));
    CHECK(got[static_cast<size_t>(b)] >= 0.5 * exact - 1e-5);
    CHECK(got[static_cast<size_t>(b)] - 0.5 * exact <= 0.5 * step * q.cwiseAbs().sum() + 1e-5);
  }
}

TEST_CASE("global top-k from every shard's own top-k is the top-k of all blocks", "[context]") {
  experts::rng r{15};
  std::vector<matrix> scores;
  std::vector<scored_block> everything, candidates;
  for (int shard = 0; shard < 6; ++shard) {
    scores.push_back(randn(1, 3 + shard * 2, r.next()));
    if (shard == 2)
      scores.back()(0, 1) = no_key; // an invisible block is never chosen
    for (Eigen::Index b = 0; b < scores.back().cols(); ++b)
      if (scores.back()(0, b) != no_key)
        everything.push_back({scores.back()(0, b), shard, static_cast<int>(b)});
    for (auto& c : shard_top(scores.back(), 0, shard, 5))
      candidates.push_back(c);
  }
  const auto two_rounds = global_top(candidates, 5);
  const auto direct = global_top(everything, 5);
  REQUIRE(two_rounds.size() == 5);
  // The five best scores of all, each found once, in (shard, block) order.
  std::vector<float> all_scores;
  for (auto& c : everything)
    all_scores.push_back(c.score);
  std::sort(all_scores.begin(), all_scores.end(), std::greater<>{});
  std::vector<float> got;
  for (size_t i = 0; i < 5; ++i) {
    CHECK(two_rounds[i].shard == direct[i].shard);
    CHECK(two_rounds[i].block == direct[i].block);
    CHECK(two_rounds[i].score == scores[static_cast<size_t>(two_rounds[i].shard)](0, two_rounds[i].block));
    got.push_back(two_rounds[i].score);
    if (i > 0)
      CHECK(std::pair{two_rounds[i - 1].shard, two_rounds[i - 1].block}
            < std::pair{two_rounds[i].shard, two_rounds[i].block});
  }
  std::sort(got.begin(), got.end(), std::greater<>{});
  CHECK(std::equal(got.begin(), got.end(), all_scores.begin()));
  // Candidates in any order give the same answer.
  std::reverse(candidates.begin(), candidates.end());
  const auto shuffled = global_top(candidates, 5);
  for (size_t i = 0; i < 5; ++i)
    CHECK((shuffled[i].shard == direct[i].shard && shuffled[i].block == direct[i].block));
  // Ties go to the lower block; invisible blocks never fill a place.
  matrix tied(1, 8);
  tied << 1.0f, 2.0f, 2.0f, no_key, 2.0f, 0.5f, 2.0f, 3.0f;
  const auto top4 = shard_top(tied, 0, 7, 4);
  REQUIRE(top4.size() == 4);
  CHECK((top4[0].block == 1 && top4[1].block == 2 && top4[2].block == 4 && top4[3].block == 7));
  const auto tied_global = global_top({{2.0f, 1, 9}, {2.0f, 0, 4}, {3.0f, 2, 0}, {2.0f, 0, 8}}, 2);
  REQUIRE(tied_global.size() == 2);
  CHECK((tied_global[0].shard == 0 && tied_global[0].block == 4));
  CHECK((tied_global[1].shard == 2 && tied_global[1].block == 0));
  CHECK(top4[3].shard == 7);
  CHECK(shard_top(tied, 0, 0, 20).size() == 7);
  CHECK(shard_top(tied, 0, 0, 0).empty());
  // A budget takes ceil(fraction * visible) blocks, at least one.
  CHECK(shard_budget(scores[5], 0, 0.125).size() == 2); // 13 blocks
  CHECK(shard_budget(scores[0], 0, 0.01).size() == 1);
  CHECK(shard_budget(scores[2], 0, 1.0).size() == 6);   // 7 blocks, one invisible
}
