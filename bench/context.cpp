// bench/context: the long-context store on this machine.
//
//   build/bin/bench_context [--max-tokens 4194304] [--trials 20] [--passkey-max 1048576]
//
// 1. Passkey in attention space: N random keys (N(0,1), d = 64) and one planted key whose
//    score for the query is ln N + 3 (dense attention gives it ~95% of the weight); recall =
//    share of trials whose sparse attention output has cosine >= 0.9 with the planted value,
//    against the fraction of 64-position blocks read (global top-k by Quest bound and by
//    MoBA mean key).
// 3. Through actors (3 in-process nodes, shards of 128K positions, up to 1M): one decode query
//    over every block, over a global top-k of 1/8 chosen in two rounds, and over each shard's
//    budget of 1/8 in one round.
// 2. Decode (one query, one head, d = 64) time against N, full and sparse at 1/8, with the
//    linear fit of full time on N and its R^2, and attention bytes per second (keys + values
//    read) against this machine's memcpy bandwidth (bytes copied per second, best of 5 copies
//    of 512 MiB) measured in the same run.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/wire.hpp"
#include "bench/machine.hpp"
#include "bench/timing.hpp"
#include "context_store/kv_shard.hpp"
#include "context_store/selection.hpp"
#include "experts/base/rng.hpp"

#include <CLI/CLI.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

using namespace eoe;
using namespace eoe::context;
using eoe::bench::clock_type;
using eoe::bench::seconds_since;

namespace {

constexpr int d = 64;
int block = 64; // positions per block (--block)
constexpr std::int64_t shard_tokens = 1 << 20; // shards of at most 1M positions

/// A context of n random positions in shards of shard_tokens, filled in chunks.
std::vector<kv_shard> make_context(std::int64_t n, std::uint64_t seed) {
  std::vector<kv_shard> shards;
  experts::rng r{seed};
  constexpr std::int64_t chunk = 16384;
  matrix k(chunk, d), v(chunk, d);
  for (std::int64_t begin = 0; begin < n; begin += shard_tokens) {
    const auto size = std::min(shard_tokens, n - begin);
    kv_shard s{{1, d, block}, begin, size};
    for (std::int64_t done = 0; done < size; done += chunk) {
      const auto m = std::min(chunk, size - done);
      for (Eigen::Index i = 0; i < m * d; ++i) {
        k.data()[i] = static_cast<float>(r.normal());
        v.data()[i] = static_cast<float>(r.normal());
      }
      const matrix kk = k.topRows(m), vv = v.topRows(m);
      s.append(std::span<const matrix>{&kk, 1}, std::span<const matrix>{&vv, 1});
    }
    shards.push_back(std::move(s));
  }
  return shards;
}

/// Sparse attention for one query row: global top-k blocks (two rounds), partials, merge.
partial sparse_attend(const std::vector<kv_shard>& shards, const matrix& q, std::int64_t pos,
                      int k, block_score kind) {
  const std::vector<std::int64_t> p{pos};
  std::vector<matrix> scores;
  std::vector<scored_block> candidates;
  for (size_t s = 0; s < shards.size(); ++s) {
    scores.push_back(shards[s].score_blocks(0, q, p, true, kind));
    for (auto& c : shard_top(scores.back(), 0, static_cast<int>(s), k))
      candidates.push_back(c);
  }
  const auto chosen = global_top(std::move(candidates), k);
  std::vector<partial> parts;
  for (size_t s = 0; s < shards.size(); ++s) {
    std::vector<int> blocks;
    for (auto& c : chosen)
      if (c.shard == static_cast<int>(s))
        blocks.push_back(c.block);
    if (!blocks.empty())
      parts.push_back(shards[s].attend_blocks(0, q, p, true, blocks));
  }
  return merge(parts);
}

partial full_attend(const std::vector<kv_shard>& shards, const matrix& q, std::int64_t pos) {
  const std::vector<std::int64_t> p{pos};
  std::vector<partial> parts;
  for (auto& s : shards)
    parts.push_back(s.attend(0, q, p, true));
  return merge(parts);
}

double memcpy_bytes_per_second() {
  const size_t n = size_t{1} << 29; // 512 MiB
  std::vector<char> a(n, 1), b(n, 2);
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t = clock_type::now();
    std::memcpy(b.data(), a.data(), n);
    best = std::max(best, static_cast<double>(n) / seconds_since(t));
  }
  return best;
}

} // namespace

int main(int argc, char** argv) {
  std::int64_t max_tokens = 4 << 20, passkey_max = 1 << 20;
  int trials = 20;
  CLI::App app{"The long-context store: passkey recall and decode scaling"};
  app.add_option("--max-tokens", max_tokens, "largest context of the scaling run");
  app.add_option("--passkey-max", passkey_max, "largest context of the passkey run");
  app.add_option("--trials", trials, "passkey trials per context length");
  app.add_option("--block", block, "positions per block summary");
  CLI11_PARSE(app, argc, argv);
  Eigen::setNbThreads(1);
  std::printf("machine: %s\n", bench::machine_line().c_str());

  // ---- passkey ----------------------------------------------------------------------------
  std::printf("\npasskey: planted score ln N + 3, %d trials; recall (cosine >= 0.9) by share of blocks read\n",
              trials);
  std::printf("%10s %-6s", "N", "score");
  const double fractions[] = {1.0 / 256, 1.0 / 128, 1.0 / 64, 1.0 / 32, 1.0 / 20, 1.0 / 16, 1.0 / 8};
  for (double f : fractions)
    std::printf("  1/%-5.0f", 1 / f);
  std::printf("\n");
  std::vector<std::int64_t> lengths;
  for (std::int64_t n : {std::int64_t{16384}, std::int64_t{100000}, std::int64_t{262144}, passkey_max})
    if (n <= passkey_max && std::find(lengths.begin(), lengths.end(), n) == lengths.end())
      lengths.push_back(n);
  for (auto n : lengths) {
    auto shards = make_context(n, 1000 + static_cast<std::uint64_t>(n));
    const auto total_blocks = (n + block - 1) / block;
    for (auto kind : {block_score::quest, block_score::moba}) {
      std::vector<int> hits(std::size(fractions), 0);
      for (int t = 0; t < trials; ++t) {
        experts::rng r{5000 + static_cast<std::uint64_t>(t)};
        matrix q(1, d), value(1, d);
        for (int i = 0; i < d; ++i) {
          q(0, i) = static_cast<float>(r.normal());
          value(0, i) = static_cast<float>(r.normal());
        }
        const auto at = static_cast<std::int64_t>(r.next() % static_cast<std::uint64_t>(n));
        // The planted key: along q, with score (q . k*) / sqrt(d) = ln N + 3.
        const float target = static_cast<float>(std::log(static_cast<double>(n)) + 3.0);
        const matrix planted = q * (target * std::sqrt(static_cast<float>(d)) / q.squaredNorm());
        auto& s = shards[static_cast<size_t>(at / shard_tokens)];
        const matrix old_k = s.keys(0).row(at - s.begin()), old_v = s.values(0).row(at - s.begin());
        s.replace(at, std::span<const matrix>{&planted, 1}, std::span<const matrix>{&value, 1});
        for (size_t f = 0; f < std::size(fractions); ++f) {
          const int k = static_cast<int>(std::ceil(fractions[f] * static_cast<double>(total_blocks)));
          const auto out = sparse_attend(shards, q, n - 1, k, kind);
          const double cos = out.out.row(0).dot(value.row(0))
                             / (out.out.row(0).norm() * value.row(0).norm() + 1e-30);
          hits[f] += cos >= 0.9;
        }
        s.replace(at, std::span<const matrix>{&old_k, 1}, std::span<const matrix>{&old_v, 1});
      }
      std::printf("%10lld %-6s", static_cast<long long>(n), kind == block_score::quest ? "quest" : "moba");
      for (size_t f = 0; f < std::size(fractions); ++f)
        std::printf("  %6.1f%%", 100.0 * hits[f] / trials);
      std::printf("\n");
    }
  }

  // ---- decode scaling ---------------------------------------------------------------------
  const double copy_bps = memcpy_bytes_per_second();
  std::printf("\ndecode, one query, one head, d = %d; memcpy %.2f GB/s\n", d, copy_bps / 1e9);
  std::printf("%10s %12s %12s %10s %12s %10s\n", "N", "full ms", "sparse ms", "speedup",
              "full GB/s", "vs memcpy");
  std::vector<double> xs, ys;
  for (std::int64_t n = 65536; n <= max_tokens; n *= 2) {
    auto shards = make_context(n, 77);
    experts::rng r{78};
    matrix q(1, d);
    for (int i = 0; i < d; ++i)
      q(0, i) = static_cast<float>(r.normal());
    const auto k = static_cast<int>((n + block - 1) / block / 8);
    // Full and sparse alternate, so that drift of the machine reaches both alike; medians.
    std::vector<double> full_t, sparse_t;
    for (int i = 0; i < 9; ++i) {
      auto start = clock_type::now();
      (void) full_attend(shards, q, n - 1);
      full_t.push_back(seconds_since(start));
      start = clock_type::now();
      (void) sparse_attend(shards, q, n - 1, k, block_score::quest);
      sparse_t.push_back(seconds_since(start));
    }
    const double full = bench::quantile(full_t, 0.5), sparse = bench::quantile(sparse_t, 0.5);
    const double bytes = 2.0 * static_cast<double>(n) * d * sizeof(float);
    std::printf("%10lld %12.3f %12.3f %9.2fx %12.2f %10.3f\n", static_cast<long long>(n),
                full * 1e3, sparse * 1e3, full / sparse, bytes / full / 1e9, bytes / full / copy_bps);
    xs.push_back(static_cast<double>(n));
    ys.push_back(full);
  }
  // Least squares time = a + b N, and its R^2.
  const double nx = static_cast<double>(xs.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    mx += xs[i] / nx;
    my += ys[i] / nx;
  }
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) * (xs[i] - mx);
    syy += (ys[i] - my) * (ys[i] - my);
  }
  const double b = sxy / sxx, a = my - b * mx;
  double ss_res = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    ss_res += std::pow(ys[i] - (a + b * xs[i]), 2);
  std::printf("linear fit of full decode time: %.3f ms + %.3f ns per token, R^2 = %.5f\n",
              a * 1e3, b * 1e9, 1 - ss_res / syy);

  // ---- through actors: full pathway, global top-k in two rounds, budget in one -------------
  {
    const std::int64_t n = std::min<std::int64_t>(max_tokens, 1 << 20);
    actors::mesh_config cfg;
    caf::actor_system sys{cfg};
    auto coord = actors::spawn_local_cluster(sys, "", 3);
    if (!actors::wait_ready(sys, coord, std::chrono::seconds(60))) {
      std::fprintf(stderr, "bench_context: the cluster did not start\n");
      return 1;
    }
    caf::scoped_actor self{sys};
    actors::context_actor ctx;
    self->request(coord, std::chrono::seconds(5), actors::context_atom::value)
      .receive([&](actors::context_actor c) { ctx = c; }, [](const caf::error&) {});
    std::uint64_t id = 0;
    self->request(ctx, std::chrono::seconds(5), actors::create_atom::value,
                  actors::context_spec{1, d, static_cast<std::uint32_t>(block), 131072})
      .receive([&](std::uint64_t i) { id = i; }, [](const caf::error&) {});
    experts::rng r{91};
    constexpr std::int64_t chunk = 65536;
    for (std::int64_t at = 0; at < n; at += chunk) {
      matrix k(chunk, d), v(chunk, d);
      for (Eigen::Index i = 0; i < k.size(); ++i) {
        k.data()[i] = static_cast<float>(r.normal());
        v.data()[i] = static_cast<float>(r.normal());
      }
      self->request(ctx, std::chrono::seconds(60), actors::append_atom::value, id,
                    actors::heads_tensor{actors::to_wire(k)}, actors::heads_tensor{actors::to_wire(v)})
        .receive([](std::uint64_t) {}, [](const caf::error&) {});
    }
    matrix q(1, d);
    for (int i = 0; i < d; ++i)
      q(0, i) = static_cast<float>(r.normal());
    const auto blocks_total = (n + block - 1) / block;
    std::printf("\nthrough actors: %lld positions in shards of 131072 on 3 in-process nodes, one decode query\n",
                static_cast<long long>(n));
    std::printf("%-34s %10s %14s\n", "mode", "ms (p50)", "blocks read");
    for (std::uint8_t mode : {0, 1, 2}) {
      actors::attention_query a;
      a.q = actors::to_wire(q);
      a.positions = actors::pack(std::vector<std::int64_t>{n - 1});
      a.mode = static_cast<actors::attention_mode>(mode);
      a.k = static_cast<std::uint32_t>(blocks_total / 8);
      a.fraction = 1.0 / 8;
      std::vector<double> t;
      std::uint64_t read = 0;
      for (int i = 0; i < 11; ++i) {
        const auto start = clock_type::now();
        self->request(ctx, std::chrono::seconds(60), actors::query_atom::value, id, a)
          .receive([&](const actors::wire_partial& w) { read = w.blocks_read; }, [](const caf::error&) {});
        if (i > 0)
          t.push_back(seconds_since(start));
      }
      std::sort(t.begin(), t.end());
      const char* name = mode == 0 ? "full pathway (every block)"
                         : mode == 1 ? "global top-k 1/8, two rounds"
                                     : "per-shard budget 1/8, one round";
      std::printf("%-34s %10.3f %9llu / %lld\n", name, t[t.size() / 2] * 1e3,
                  static_cast<unsigned long long>(read), static_cast<long long>(blocks_total));
    }
    caf::anon_send(coord, actors::shutdown_atom::value);
  }
  return 0;
}
