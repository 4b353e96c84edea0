// bench_serve: a language model served to N concurrent sessions by 3 `eoe node` processes on
// loopback (continuous batching in the composer: actors/step_scheduler) against the same
// batching in one process with no actors (experts::decode_step over the same scheduler), in
// the same run. For each context length C and session count N: every session is first
// filled to C positions (untimed), then each reads a prompt of --prompt bytes and generates
// --generate bytes greedily, all at once. Reported per row: aggregate generated tokens/s of
// both and their ratio, time to first token (the prompt's feed) p50/p99 and inter-token
// latency (each later token) p50/p99 of the cluster. With --rounds R each row runs both sides
// R times, alternating which goes first, and reports the medians. With --json the last line
// is one JSON object of every row and the machine.
//   bench_serve                                   sessions 1,8,64,256 at contexts 128,4096
//                                                 (256 x 4096 with --max-positions 0)
//   bench_serve --sessions 1,64 --contexts 128 --json
//   bench_serve --sessions 1,64 --contexts 128 --rounds 5   medians of 5 alternating rounds

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "actors/step_scheduler.hpp"
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
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>
#include <vector>

using namespace eoe;
namespace fs = std::filesystem;

namespace {

struct workload {
  size_t context = 128;  ///< positions every session holds before its prompt
  size_t prompt = 64;
  size_t generate = 128; ///< tokens generated per session (the first from the prompt's logits)
  size_t chunk = 512;    ///< filler tokens per request
};

/// What one side measured.
struct measured {
  double wall_s = 0;              ///< from the first prompt to the last generated token
  std::vector<double> ttft, itl;  ///< seconds
  size_t tokens = 0;              ///< generated
  double tok_s() const {
    return wall_s > 0 ? static_cast<double>(tokens) / wall_s : 0;
  }
};

std::vector<std::uint8_t> text_of(size_t n, std::uint64_t seed) {
  experts::rng r{seed};
  std::vector<std::uint8_t> out;
  while (out.size() < n)
    out.push_back(static_cast<std::uint8_t>(' ' + r.next() % 95)); // printable, as text is
  return out;
}

std::uint8_t argmax_last(const matrix& logits) {
  Eigen::Index best = 0;
  logits.row(logits.rows() - 1).maxCoeff(&best);
  return static_cast<std::uint8_t>(best);
}

/// N client threads, each a session of the cluster, filled, then prompted and generating.
measured run_cluster(caf::actor_system& sys, const actors::coordinator_actor& coord, size_t n,
                     const workload& w) {
  measured out;
  std::vector<std::vector<double>> ttft(n), itl(n);
  std::vector<std::string> errors(n);
  std::barrier sync{static_cast<std::ptrdiff_t>(n) + 1};
  std::vector<std::thread> clients;
  for (size_t i = 0; i < n; ++i)
    clients.emplace_back([&, i] {
      std::optional<net::cluster_session> s;
      try {
        s.emplace(sys, coord, std::chrono::minutes(10));
        const auto filler = text_of(w.context, 1000 + i);
        for (size_t at = 0; at < w.context; at += w.chunk)
          s->feed({filler.data() + at, std::min(w.chunk, w.context - at)});
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
      sync.arrive_and_wait(); // every session filled
      sync.arrive_and_wait(); // the clock started
      if (!errors[i].empty())
        return;
      try {
        const auto prompt = text_of(w.prompt, 7 + i);
        auto t = bench::clock_type::now();
        std::uint8_t next = argmax_last(s->feed(prompt));
        ttft[i].push_back(bench::seconds_since(t));
        for (size_t k = 1; k < w.generate; ++k) {
          t = bench::clock_type::now();
          next = argmax_last(s->feed({&next, 1}));
          itl[i].push_back(bench::seconds_since(t));
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  sync.arrive_and_wait();
  const auto start = bench::clock_type::now();
  sync.arrive_and_wait();
  for (auto& c : clients)
    c.join();
  out.wall_s = bench::seconds_since(start);
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i].empty())
      throw std::runtime_error("session " + std::to_string(i) + ": " + errors[i]);
    out.ttft.insert(out.ttft.end(), ttft[i].begin(), ttft[i].end());
    out.itl.insert(out.itl.end(), itl[i].begin(), itl[i].end());
  }
  out.tokens = n * w.generate;
  return out;
}

/// The same sessions in this process: one thread runs the scheduler's steps with decode_step.
measured run_inproc(const experts::model& m, const experts::kv_layout& layout, size_t n,
                    const workload& w, std::uint32_t max_step_tokens) {
  measured out;
  auto be = kernels::make_cpu_backend();
  std::vector<experts::lm_sequence> seqs(n);
  for (size_t i = 0; i < n; ++i) {
    const auto filler = text_of(w.context, 1000 + i);
    for (size_t at = 0; at < w.context; at += w.chunk) {
      const experts::step_feed f{&seqs[i], {filler.data() + at, std::min(w.chunk, w.context - at)}};
      experts::decode_step(m, *be, layout, {&f, 1});
    }
  }
  // Each session's current feed: its prompt, then one token at a time.
  std::vector<std::vector<std::uint8_t>> feed(n);
  std::vector<size_t> generated(n, 0);
  std::vector<bench::clock_type::time_point> last(n);
  std::map<std::uint64_t, matrix> partial; // feed rows done so far, by session
  actors::step_scheduler sched{max_step_tokens, 1};
  const auto start = bench::clock_type::now();
  for (size_t i = 0; i < n; ++i) {
    feed[i] = text_of(w.prompt, 7 + i);
    last[i] = start;
    sched.add(i, 1, static_cast<std::uint32_t>(feed[i].size()), false);
  }
  while (auto step = sched.next()) {
    std::vector<experts::step_feed> feeds;
    for (const auto& s : step->slices)
      feeds.push_back({&seqs[s.feed], {feed[s.feed].data() + s.first, s.count}});
    const matrix logits = experts::decode_step(m, *be, layout, feeds);
    const auto now = bench::clock_type::now();
    for (const auto& s : step->slices)
      if (s.first + s.count == feed[s.feed].size()) {
        const auto next = argmax_last(logits.middleRows(s.row, s.count));
        const double dt = std::chrono::duration<double>(now - last[s.feed]).count();
        (generated[s.feed]++ == 0 ? out.ttft : out.itl).push_back(dt);
        last[s.feed] = now;
        feed[s.feed] = {next};
      }
    for (const auto done : sched.finished(*step))
      if (generated[done] < w.generate)
        sched.add(done, 1, 1, false);
  }
  out.wall_s = bench::seconds_since(start);
  out.tokens = n * w.generate;
  return out;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Aggregate decode throughput of a served language model with many sessions, "
               "against the same batching in one process"};
  std::string checkpoint = "build/lm_compare/eoe.ckpt";
  std::vector<size_t> sessions{1, 8, 64, 256}, contexts{128, 4096};
  workload w;
  std::uint32_t max_step_tokens = 256, steps_in_flight = 2, worker_threads = 0;
  std::uint64_t shard = 4096;
  std::string placement = "head";
  bool json_out = false;
  size_t max_positions = size_t{1} << 19;
  size_t rounds = 1;
  app.add_option("--checkpoint", checkpoint,
                 "a language model (missing: configs/lm/eoe.toml at init)")->capture_default_str();
  app.add_option("--sessions", sessions, "concurrent sessions")->delimiter(',');
  app.add_option("--contexts", contexts, "positions each session holds before its prompt")
    ->delimiter(',');
  app.add_option("--prompt", w.prompt, "prompt bytes per session")->check(CLI::Range(1, 1 << 20));
  app.add_option("--generate", w.generate, "bytes generated per session")
    ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-step-tokens", max_step_tokens, "[cluster] max_step_tokens (both sides)")
    ->check(CLI::Range(1, 1 << 20));
  app.add_option("--worker-threads", worker_threads,
                 "[cluster] worker_threads (0: the machine's hardware threads)")
    ->check(CLI::Range(0, 256));
  app.add_option("--steps-in-flight", steps_in_flight, "[cluster] steps_in_flight")
    ->check(CLI::Range(1, 64));
  app.add_option("--shard", shard, "positions per context shard (both sides)")
    ->check(CLI::Range(1, 1 << 30));
  app.add_option("--kv-placement", placement, "[cluster] kv_placement of the cluster")
    ->check(CLI::IsMember({"head", "spread"}))
    ->capture_default_str();
  app.add_option("--max-positions", max_positions,
                 "skip rows whose sessions x context passes this (0: run every row; the "
                 "256 x 4096 row alone takes about 9 minutes on 2 cores)")
    ->capture_default_str();
  app.add_option("--rounds", rounds,
                 "per row, the cluster and the in-process decoder this many times, alternating "
                 "which goes first; tokens/s and the ratio are the rounds' medians, latencies "
                 "the quantiles of every round's (this machine's speed drifts between minutes)")
    ->check(CLI::Range(1, 99))
    ->capture_default_str();
  app.add_flag("--json", json_out, "print the rows as one JSON object on the last line");
  CLI11_PARSE(app, argc, argv);

  const auto dir = fs::temp_directory_path() / ("eoe_bench_serve_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto model_note = bench::lm_checkpoint(checkpoint, dir, "bench_serve");
  const auto model = actors::load_model(checkpoint);
  const auto machine = bench::machine_line();
  std::printf("bench_serve: %s\nmachine: %s\nmodel: '%s' (D %d, %zu layers); prompt %zu bytes, "
              "%zu generated per session; max_step_tokens %u, steps_in_flight %u, shards of "
              "%llu positions, kv_placement %s\n",
              model_note.c_str(), machine.c_str(), model->config.name.c_str(), model->config.dim,
              model->config.layers.size(), w.prompt, w.generate, max_step_tokens,
              steps_in_flight, static_cast<unsigned long long>(shard), placement.c_str());
  std::fflush(stdout); // the node processes fork from this one
  const bench::loopback_cluster cluster{
    dir, 31000 + static_cast<int>(getpid() % 900) * 10,
    "[cluster]\nname = \"serve_bench\"\ncheckpoint = \"" + checkpoint + "\"\nhead = \"n1\"\n"
      "kv_shard_positions = " + std::to_string(shard) + "\nmax_step_tokens = "
      + std::to_string(max_step_tokens) + "\nsteps_in_flight = " + std::to_string(steps_in_flight)
      + "\nsession_idle_s = 0\nkv_placement = \"" + placement + "\"\nworker_threads = "
      + std::to_string(worker_threads) + "\n"};
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  const auto coord = cluster.head(sys);
  const experts::kv_layout layout{static_cast<std::int64_t>(shard), 64};
  std::printf("\n%8s %8s | %12s %12s %7s | %9s %9s %9s %9s | %10s %10s | %6s %7s\n", "context",
              "sessions", "cluster t/s", "in-proc t/s", "ratio", "ttft p50", "ttft p99",
              "itl p50", "itl p99", "in-proc itl", "p99", "mean step", "step ms");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto c : contexts)
    for (const auto n : sessions) {
      w.context = c;
      if (max_positions > 0 && n * c > max_positions) {
        std::printf("%8zu %8zu | skipped: %zu positions of context pass --max-positions %zu\n", c,
                    n, n * c, max_positions);
        continue;
      }
      try {
        const auto before = net::status(sys, coord);
        measured cl, in; // every round's latencies
        std::vector<double> cl_rates, in_rates, ratios;
        for (size_t r = 0; r < rounds; ++r) {
          std::optional<measured> c, i;
          if (r % 2 == 1)
            i = run_inproc(*model, layout, n, w, max_step_tokens);
          c = run_cluster(sys, coord, n, w);
          if (!i)
            i = run_inproc(*model, layout, n, w, max_step_tokens);
          cl_rates.push_back(c->tok_s());
          in_rates.push_back(i->tok_s());
          ratios.push_back(c->tok_s() / i->tok_s());
          for (auto [from, to] : {std::pair{&*c, &cl}, std::pair{&*i, &in}}) {
            to->ttft.insert(to->ttft.end(), from->ttft.begin(), from->ttft.end());
            to->itl.insert(to->itl.end(), from->itl.begin(), from->itl.end());
          }
        }
        const double cl_tok_s = bench::quantile(cl_rates, 0.5);
        const double in_tok_s = bench::quantile(in_rates, 0.5);
        const double ratio = bench::quantile(ratios, 0.5);
        const auto after = net::status(sys, coord);
        double mean_step = 0, step_ms = 0;
        if (before && after && after->serving.steps > before->serving.steps) {
          const auto steps = static_cast<double>(after->serving.steps - before->serving.steps);
          mean_step =
            static_cast<double>(after->serving.step_tokens - before->serving.step_tokens) / steps;
          step_ms = 1e-6 * static_cast<double>(after->serving.step_ns - before->serving.step_ns)
                    / steps;
        }
        const auto ms = [](const std::vector<double>& v, double q) {
          return 1e3 * bench::quantile(v, q);
        };
        std::printf("%8zu %8zu | %12.1f %12.1f %7.3f | %9.2f %9.2f %9.2f %9.2f | %10.2f %10.2f | "
                    "%6.1f %7.2f\n",
                    c, n, cl_tok_s, in_tok_s, ratio, ms(cl.ttft, 0.5),
                    ms(cl.ttft, 0.99), ms(cl.itl, 0.5), ms(cl.itl, 0.99), ms(in.itl, 0.5),
                    ms(in.itl, 0.99), mean_step, step_ms);
        std::fflush(stdout);
        rows.push_back(nlohmann::json{{"sessions", n},
                        {"context", c},
                        {"cluster_tok_s", cl_tok_s},
                        {"inproc_tok_s", in_tok_s},
                        {"ratio", ratio},
                        {"rounds", rounds},
                        {"ratios", ratios},
                        {"ttft_p50_ms", ms(cl.ttft, 0.5)},
                        {"ttft_p99_ms", ms(cl.ttft, 0.99)},
                        {"itl_p50_ms", ms(cl.itl, 0.5)},
                        {"itl_p99_ms", ms(cl.itl, 0.99)},
                        {"inproc_itl_p50_ms", ms(in.itl, 0.5)},
                        {"inproc_itl_p99_ms", ms(in.itl, 0.99)},
                        {"mean_step_tokens", mean_step},
                        {"mean_step_ms", step_ms}});
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_serve: %zu sessions at context %zu: %s\n", n, c, e.what());
        return 1;
      }
    }
  if (json_out)
    std::printf("%s\n", nlohmann::json{{"machine", machine}, {"rows", rows}}.dump().c_str());
  fs::remove_all(dir);
  return 0;
}
