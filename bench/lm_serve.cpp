// bench_lm_serve: decode tokens/s of a language model served by 3 `eoe node` processes on
// loopback (a session: K/V in the context shard actors, attention on the composer, the expert
// layers on the expert actors) against the in-process reference decoder (experts/lm_decode),
// at growing context lengths. At each length both are first filled to it (prefill in
// chunks, timed too), then decode --steps single tokens; the figure is the median of
// alternating rounds. Prints the ratio cluster / reference and the machine.
//   bench_lm_serve                               the trained EoE of bench/lm_compare.sh if
//                                                present, else configs/lm/eoe.toml at init
//   bench_lm_serve --contexts 128,4096,65536 --steps 32 --rounds 3

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "bench/lm_checkpoint.hpp"
#include "bench/loopback_cluster.hpp"
#include "bench/machine.hpp"
#include "bench/timing.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/lm_decode.hpp"
#include "experts/base/rng.hpp"
#include "net/client.hpp"
#include "net/lm_client.hpp"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <vector>

using namespace eoe;
namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> random_bytes(size_t n, std::uint64_t seed) {
  experts::rng r{seed};
  std::vector<std::uint8_t> out(n);
  for (auto& b : out)
    b = static_cast<std::uint8_t>(' ' + r.next() % 95); // printable, as text is
  return out;
}

/// Fills d to `length` positions in chunks; returns the seconds it took.
double prefill(experts::sequence_decoder& d, const std::vector<std::uint8_t>& text, size_t length,
               size_t chunk) {
  const auto start = bench::clock_type::now();
  while (static_cast<size_t>(d.position()) < length) {
    const auto from = static_cast<size_t>(d.position());
    const auto n = std::min(chunk, length - from);
    d.feed({text.data() + from, n});
  }
  return bench::seconds_since(start);
}

/// Decodes `steps` single tokens (each the argmax of the last logits); seconds per token.
double decode(experts::sequence_decoder& d, int steps) {
  std::uint8_t next = 'a';
  const auto start = bench::clock_type::now();
  for (int i = 0; i < steps; ++i) {
    const matrix logits = d.feed({&next, 1});
    Eigen::Index best = 0;
    logits.row(0).maxCoeff(&best);
    next = static_cast<std::uint8_t>(best);
  }
  return bench::seconds_since(start) / steps;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Decode tokens/s of a served language model against the in-process decoder"};
  std::string checkpoint = "build/lm_compare/eoe.ckpt";
  std::vector<size_t> contexts{128, 1024, 4096, 16384};
  int steps = 32, rounds = 3;
  size_t chunk = 512;
  std::uint64_t shard = 4096;
  app.add_option("--checkpoint", checkpoint,
                 "a language model (missing: configs/lm/eoe.toml at init)")->capture_default_str();
  app.add_option("--contexts", contexts, "context lengths decoded at")->delimiter(',');
  app.add_option("--steps", steps, "tokens decoded per length and round")->check(CLI::Range(1, 100000));
  app.add_option("--rounds", rounds, "alternating rounds (the median is reported)")
    ->check(CLI::Range(1, 100));
  app.add_option("--chunk", chunk, "prefill tokens per request")->check(CLI::Range(1, 1 << 20));
  app.add_option("--shard", shard, "positions per context shard (cluster and reference)")
    ->check(CLI::Range(1, 1 << 30));
  CLI11_PARSE(app, argc, argv);

  const auto dir = fs::temp_directory_path() / ("eoe_bench_lm_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto model_note = bench::lm_checkpoint(checkpoint, dir, "bench_lm_serve");
  const auto model = actors::load_model(checkpoint);
  std::printf("bench_lm_serve: %s\nmachine: %s\nmodel: '%s' (D %d, %zu layers), shards of %llu "
              "positions, prefill chunks of %zu, %d decode steps x %d rounds per length\n",
              model_note.c_str(), bench::machine_line().c_str(), model->config.name.c_str(),
              model->config.dim, model->config.layers.size(),
              static_cast<unsigned long long>(shard), chunk, steps, rounds);

  std::fflush(stdout); // the node processes fork from this one
  const bench::loopback_cluster cluster{
    dir, 31000 + static_cast<int>(getpid() % 900) * 10,
    "[cluster]\nname = \"lm_bench\"\ncheckpoint = \"" + checkpoint + "\"\nhead = \"n1\"\n"
      "kv_shard_positions = " + std::to_string(shard) + "\n"};
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  const auto coord = cluster.head(sys);
  std::printf("\n%9s | %14s %14s %7s | %14s %14s %7s | %s\n", "context", "cluster tok/s",
              "in-proc tok/s", "ratio", "cluster pre/s", "in-proc pre/s", "ratio",
              "max |logit diff|");
  const auto text = random_bytes(*std::max_element(contexts.begin(), contexts.end()) + 1, 7);
  for (auto length : contexts) {
    try {
      net::cluster_session session{sys, coord, std::chrono::minutes(10)};
      experts::lm_decoder local{*model, {static_cast<std::int64_t>(shard), 64}};
      const double pre_cluster = prefill(session, text, length, chunk);
      const double pre_local = prefill(local, text, length, chunk);
      // The logits agree at this length (one step each, the same token).
      const std::uint8_t probe = 'x';
      const float diff = (session.feed({&probe, 1}) - local.feed({&probe, 1})).cwiseAbs().maxCoeff();
      std::vector<double> cl, lo;
      for (int r = 0; r < rounds; ++r) {
        cl.push_back(decode(session, steps));
        lo.push_back(decode(local, steps));
      }
      const double tc = 1 / bench::quantile(cl, 0.5), tl = 1 / bench::quantile(lo, 0.5);
      const double pc = static_cast<double>(length) / pre_cluster,
                   pl = static_cast<double>(length) / pre_local;
      std::printf("%9zu | %14.1f %14.1f %7.3f | %14.0f %14.0f %7.3f | %.2g\n", length, tc, tl,
                  tc / tl, pc, pl, pc / pl, static_cast<double>(diff));
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_lm_serve: at context %zu: %s\n", length, e.what());
      return 1;
    }
  }
  fs::remove_all(dir);
  return 0;
}
