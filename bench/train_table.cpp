// bench/train_table: the comparison table of trained Fashion-MNIST models, from their
// checkpoints and metrics files (what bench/train_compare.sh writes).
//
//   build/bin/bench_train_table --reference dense_same_params DIR/a.ckpt DIR/b.ckpt ...
//
// Per model: test accuracy and loss after the last epoch, parameters, expert FLOPs per example
// as measured on the test set (and as a share of the reference model's), load coefficient of
// variation and specialisation per expert layer, epochs, training time and wall time.

#include "bench/machine.hpp"
#include "experts/accounting.hpp"
#include "experts/checkpoint.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

using namespace eoe::experts;

namespace {

struct row {
  std::string name;
  std::uint64_t params = 0;
  nlohmann::json last;
  double wall = -1;
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> checkpoints;
  std::string reference;
  CLI::App app{"Comparison table of trained models"};
  app.add_option("checkpoints", checkpoints)->required();
  app.add_option("--reference", reference, "model whose expert FLOPs are the 100% mark");
  CLI11_PARSE(app, argc, argv);

  std::vector<row> rows;
  for (auto& path : checkpoints) {
    auto m = load_checkpoint(path);
    if (!m) {
      std::fprintf(stderr, "bench_train_table: %s\n", m.error().message.c_str());
      return 1;
    }
    row r;
    r.name = std::filesystem::path(path).stem().string();
    r.params = account(m->config).total;
    std::ifstream metrics{path + ".metrics.jsonl"};
    std::string line, last;
    while (std::getline(metrics, line))
      if (!line.empty())
        last = line;
    if (last.empty()) {
      std::fprintf(stderr, "bench_train_table: %s.metrics.jsonl: no epochs\n", path.c_str());
      return 1;
    }
    r.last = nlohmann::json::parse(last);
    std::ifstream wall{path + ".wall"};
    wall >> r.wall;
    rows.push_back(std::move(r));
  }
  double ref_flops = 0;
  for (auto& r : rows)
    if (r.name == reference)
      ref_flops = r.last["test"]["expert_flops_per_example"].get<double>();

  std::printf("| model | test acc | test loss | params | expert FLOPs/example | vs %s | load CV per layer | H(E\\|class) / max, bits | I(class;E), bits | epochs | train s | wall s |\n",
              reference.empty() ? "reference" : reference.c_str());
  std::printf("|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|\n");
  for (auto& r : rows) {
    const auto& test = r.last["test"];
    std::string cv, h, mi;
    for (auto& l : test["layers"]) {
      const bool experts = l["experts"].get<int>() > 1;
      const auto sep = cv.empty() ? "" : ", ";
      cv += sep + (experts ? fmt("%.2f", l["load_cv"].get<double>()) : std::string{"-"});
      h += sep + (experts ? fmt("%.2f", l["entropy_expert_given_class_bits"].get<double>()) + "/"
                              + fmt("%.0f", l["max_entropy_bits"].get<double>())
                          : std::string{"-"});
      mi += sep + (experts ? fmt("%.2f", l["mutual_information_bits"].get<double>())
                           : std::string{"-"});
    }
    const double flops = test["expert_flops_per_example"].get<double>();
    std::printf("| %s | %.2f%% | %.4f | %s | %s | %s | %s | %s | %s | %d | %.0f | %s |\n",
                r.name.c_str(), 100 * test["accuracy"].get<double>(), test["loss"].get<double>(),
                thousands(r.params).c_str(), fmt("%.3g", flops).c_str(),
                ref_flops > 0 ? fmt("%.1f%%", 100 * flops / ref_flops).c_str() : "-", cv.c_str(),
                h.c_str(), mi.c_str(), r.last["epoch"].get<int>(),
                r.last["train_seconds"].get<double>(),
                r.wall >= 0 ? fmt("%.0f", r.wall).c_str() : "-");
  }
  std::printf("\nmachine: %s\n", eoe::bench::machine_line().c_str());
  return 0;
}
