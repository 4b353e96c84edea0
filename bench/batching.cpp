// bench/batching: classifier requests through 3 `eoe node` processes on loopback (the embedded
// default model), with request batching ([cluster] max_batch_rows = 4096, batches_in_flight
// as --batches-in-flight says, default 1) against the same cluster with it off (max_batch_rows = 0: every
// request crosses the mesh alone), in the same run, at each concurrency. Every answer is
// checked against the in-process reference (net/load_generator).
//
//   build/bin/bench_batching [--requests 2000] [--tokens 4] [--concurrency 1 8 32] [--rounds 2]
//                            [--batches-in-flight 2]
//
// Prints per setting and concurrency: ok / wrong / failed / lost, p50 / p99, requests/s, the
// mean batch (requests per batch sent), and batched / alone requests per second. Rounds
// alternate the two clusters; the medians are printed.

#include "actors/mesh_config.hpp"
#include "bench/loopback_cluster.hpp"
#include "bench/machine.hpp"
#include "net/client.hpp"
#include "net/load_generator.hpp"

#include <caf/scoped_actor.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <unistd.h>

using namespace eoe;
namespace fs = std::filesystem;

namespace {

struct run_result {
  net::load_report report;
  double rps = 0;
  double mean_batch = 0;
};

run_result run(const net::cluster_config& c, size_t requests, size_t tokens, size_t concurrency) {
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, c.nodes[0].address());
  if (!coord) {
    std::fprintf(stderr, "bench: cannot reach the head\n");
    std::exit(1);
  }
  net::load_options lo;
  lo.requests = requests;
  lo.concurrency = concurrency;
  lo.tokens = tokens;
  lo.deadline_ms = 30000;
  const auto before = bench::loopback_cluster::batches_of(sys, *coord);
  run_result r;
  r.report = net::run_load(sys, *coord, lo);
  const auto batches = bench::loopback_cluster::batches_of(sys, *coord) - before;
  r.rps = static_cast<double>(r.report.ok + r.report.wrong) / r.report.seconds;
  r.mean_batch = batches > 0 ? static_cast<double>(requests) / static_cast<double>(batches) : 0;
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  size_t requests = 2000, tokens = 4, rounds = 2, in_flight = 2;
  std::vector<size_t> concurrencies{1, 8, 32};
  CLI::App app{"Request batching against every request alone, the same cluster and load"};
  app.add_option("--requests", requests);
  app.add_option("--tokens", tokens);
  app.add_option("--concurrency", concurrencies);
  app.add_option("--rounds", rounds);
  app.add_option("--batches-in-flight", in_flight, "[cluster] batches_in_flight of the batched cluster");
  CLI11_PARSE(app, argc, argv);

  const int base = 31000 + static_cast<int>(getpid() % 1000) * 10;
  const std::vector<std::pair<std::string, std::string>> settings{
    {"alone (max_batch_rows = 0)", "max_batch_rows = 0\n"},
    {"batched, " + std::to_string(in_flight) + " in flight",
     "batches_in_flight = " + std::to_string(in_flight) + "\n"}};
  // [setting][concurrency] -> per round
  std::map<std::pair<size_t, size_t>, std::vector<run_result>> got;
  bool bad = false;
  for (size_t round = 0; round < rounds; ++round)
    for (size_t s = 0; s < settings.size(); ++s) {
      const auto dir = fs::temp_directory_path()
                       / ("eoe_bench_batching_" + std::to_string(getpid()) + "_" + std::to_string(s));
      fs::create_directories(dir);
      {
        bench::loopback_cluster cluster{dir, base + static_cast<int>(s) * 3,
                                        "[cluster]\nname = \"bench\"\n" + settings[s].second};
        for (auto c : concurrencies) {
          auto r = run(cluster.config, requests, tokens, c);
          bad = bad || r.report.wrong + r.report.lost + r.report.failed > 0;
          got[{s, c}].push_back(std::move(r));
        }
      }
      fs::remove_all(dir);
    }

  std::printf("machine: %s\n", bench::machine_line().c_str());
  std::printf("3 node processes on loopback, embedded default model, %zu requests of %zu tokens per "
              "run, every answer checked against the reference; medians of %zu rounds\n",
              requests, tokens, rounds);
  std::printf("%-28s %5s %6s %6s %6s %5s %9s %9s %9s %7s\n", "", "conc", "ok", "wrong", "failed",
              "lost", "p50 ms", "p99 ms", "req/s", "batch");
  std::map<size_t, double> rps_of[2];
  for (size_t s = 0; s < settings.size(); ++s)
    for (auto c : concurrencies) {
      const auto& runs = got[{s, c}];
      std::vector<double> rps, p50, p99, batch;
      for (auto& r : runs) {
        rps.push_back(r.rps);
        p50.push_back(net::quantile(r.report.latency_ms, 0.5));
        p99.push_back(net::quantile(r.report.latency_ms, 0.99));
        batch.push_back(r.mean_batch);
      }
      const auto& last = runs.back().report;
      rps_of[s][c] = median(rps);
      std::printf("%-28s %5zu %6zu %6zu %6zu %5zu %9.2f %9.2f %9.0f %7.2f\n", settings[s].first.c_str(),
                  c, last.ok, last.wrong, last.failed, last.lost, median(p50), median(p99),
                  median(rps), median(batch));
    }
  for (auto c : concurrencies)
    std::printf("concurrency %zu: batched / alone requests per second: %.2f\n", c,
                rps_of[1][c] / rps_of[0][c]);
  return bad ? 1 : 0;
}
