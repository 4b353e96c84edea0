// eoe forward: the in-process reference forward of a model on a few tokens, printing which
// experts each token activated on every layer, with their gates.

#include "experts/model/forward.hpp"
#include "tools/eoe/activation_report.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/model_source.hpp"
#include "tools/eoe/token_input.hpp"

#include <nlohmann/json.hpp>

#include <iostream>

namespace eoe::cli {

namespace {

struct options {
  model_source source;
  size_t tokens = 8;
  std::string input = "auto";
  std::string backend = "cpu";
  bool json = false;
};

void run(const options& opt) {
  auto m = opt.source.load();
  const auto& c = m.config;
  auto be = kernels::make_backend(opt.backend);
  if (!be)
    throw command_error{be.error().message};
  auto in = load_tokens(opt.input, opt.tokens, c);
  auto res = experts::forward(**be, m, in.x);
  if (!res)
    throw command_error{res.error().message};

  if (opt.json) {
    for (Eigen::Index t = 0; t < in.x.rows(); ++t) {
      nlohmann::json j;
      j["token"] = t;
      if (in.labels[t] >= 0)
        j["label"] = in.labels[t];
      auto& layers = j["layers"] = nlohmann::json::array();
      for (auto& rec : res->layers) {
        auto es = rec.active.experts_of(t);
        auto gs = rec.active.gates_of(t);
        nlohmann::json lj{{"experts", std::vector<int>(es.begin(), es.end())},
                          {"gates", std::vector<float>(gs.begin(), gs.end())}};
        if (rec.scores.size())
          lj["scores"] = std::vector<float>(rec.scores.row(t).begin(), rec.scores.row(t).end());
        layers.push_back(std::move(lj));
      }
      j["output"] = std::vector<float>(res->output.row(t).begin(), res->output.row(t).end());
      std::cout << j.dump() << "\n";
    }
    return;
  }
  std::cout << "model '" << c.name << "' from " << opt.source.describe(m) << ", backend "
            << (*be)->name() << ", on " << in.what << "\n"
            << describe_layers(c) << format_activations(c, *res, in.labels);
}

} // namespace

void add_forward(CLI::App& app) {
  auto* cmd = app.add_subcommand(
    "forward", "In-process reference forward: which experts each token activated, per layer");
  auto opt = std::make_shared<options>();
  opt->source.add_options(*cmd);
  cmd->add_option("--tokens,-n", opt->tokens, "tokens (inputs) to run")
    ->check(CLI::Range(1, 100000));
  cmd->add_option("--input", opt->input,
                  "fashion: Fashion-MNIST test images; random: seeded N(0,1); auto: fashion "
                  "when the model takes 784 inputs; or a text file, one token per line");
  cmd->add_option("--backend", opt->backend, "math backend")
    ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--json", opt->json, "one JSON object per token");
  cmd->callback([opt] { run(*opt); });
}

} // namespace eoe::cli
