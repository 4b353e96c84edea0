// bench/train_table: the comparison table of trained Fashion-MNIST models (or of language
// models: bench/lm_compare.sh), from their checkpoints and metrics files (what
// bench/train_compare.sh writes).
//
//   build/bin/bench_train_table --reference dense_same_params DIR/a.ckpt DIR/b.ckpt ...
//
// Per model: test accuracy and loss after the last epoch, parameters, expert FLOPs per example
// as measured on the test set (and as a share of the reference model's), load coefficient of
// variation and specialisation per expert layer, epochs, training time and wall time.

#include "bench/machine.hpp"
#include "experts/model/accounting.hpp"
#include "experts/model/checkpoint.hpp"

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
  model_config config;
  std::uint64_t params = 0;
  nlohmann::json last;
  double wall = -1;
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// Language models: validation loss, perplexity and bits per byte after the last epoch,
/// parameters, active FLOPs per token (accounting: attention at the mean position of a full
/// context, every EoE expert's score, k experts, head), the expert FLOPs measured on the
/// validation text, the load CV per expert layer, epochs and times.
void print_lm_table(const std::vector<row>& rows, const std::string& reference) {
  double ref_flops = 0;
  for (auto& r : rows)
    if (r.name == reference)
      ref_flops = static_cast<double>(account(r.config).flops);
  std::printf("| model | expert layers | validation loss, nats/byte | perplexity | bits/byte | "
              "next-byte acc | params | active FLOPs/token | vs %s | expert FLOPs/token "
              "(measured) | load CV per layer | epochs | train s | wall s |\n",
              reference.empty() ? "reference" : reference.c_str());
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
  for (auto& r : rows) {
    const auto& v = r.last["validation"];
    std::string cv;
    for (auto& l : v["layers"])
      cv += (cv.empty() ? "" : ", ")
            + (l["experts"].get<int>() > 1 ? fmt("%.2f", l["load_cv"].get<double>()) : std::string{"-"});
    std::string kinds;
    for (auto& l : r.config.layers)
      if (l.kind != layer_kind::attention) {
        std::string k{to_string(l.kind)};
        if (l.kind != layer_kind::dense)
          k += " " + std::to_string(l.k) + "/" + std::to_string(l.experts);
        if (l.kind == layer_kind::eoe && l.rank > 0)
          k += " r" + std::to_string(l.rank);
        if (l.kind == layer_kind::eoe && l.score_columns < l.score_width())
          k += " s" + std::to_string(l.score_columns);
        k += " H" + std::to_string(l.hidden);
        if (kinds.find(k) == std::string::npos)
          kinds += (kinds.empty() ? "" : ", ") + k;
      }
    const double flops = static_cast<double>(account(r.config).flops);
    std::printf("| %s | %s | %.4f | %.3f | %.3f | %.2f%% | %s | %s | %s | %s | %s | %d | %.0f | %s |\n",
                r.name.c_str(), kinds.c_str(), v["loss"].get<double>(),
                v["perplexity"].get<double>(), v["bits_per_byte"].get<double>(),
                100 * v["accuracy"].get<double>(), thousands(r.params).c_str(),
                thousands(static_cast<std::uint64_t>(flops)).c_str(),
                ref_flops > 0 ? fmt("%.1f%%", 100 * flops / ref_flops).c_str() : "-",
                fmt("%.3g", v["expert_flops_per_token"].get<double>()).c_str(), cv.c_str(),
                r.last["epoch"].get<int>(), r.last["train_seconds"].get<double>(),
                r.wall >= 0 ? fmt("%.0f", r.wall).c_str() : "-");
  }
  std::printf("\nmachine: %s\n", eoe::bench::machine_line().c_str());
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
    r.config = m->config;
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
  if (!rows.empty() && rows[0].config.is_lm()) {
    for (auto& r : rows)
      if (!r.config.is_lm()) {
        std::fprintf(stderr, "bench_train_table: %s is not a language model like %s\n",
                     r.name.c_str(), rows[0].name.c_str());
        return 1;
      }
    print_lm_table(rows, reference);
    return 0;
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
