// eoe forward: the in-process reference forward of a model on a few tokens, printing which
// experts each token activated on every layer, with their gates.

#include "experts/fashion_mnist.hpp"
#include "experts/forward.hpp"
#include "experts/rng.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/model_source.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
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

struct batch {
  matrix x;
  std::vector<int> labels; // -1 where unknown
  std::string what;
};

batch make_input(const options& opt, const experts::model_config& c) {
  const int in_dim = c.input_dim > 0 ? c.input_dim : c.dim;
  std::string kind = opt.input;
  if (kind == "auto")
    kind = in_dim == experts::fashion_mnist_pixels ? "fashion" : "random";
  batch b;
  if (kind == "fashion") {
    if (in_dim != experts::fashion_mnist_pixels)
      throw command_error{"--input fashion: the model takes " + std::to_string(in_dim)
                          + " inputs per token, a Fashion-MNIST image has 784"};
    auto data = experts::load_fashion_mnist("test", opt.tokens);
    if (!data)
      throw command_error{data.error().message};
    b.x = std::move(data->images);
    b.labels.assign(data->labels.begin(), data->labels.end());
    b.what = std::to_string(b.x.rows()) + " Fashion-MNIST test images";
  } else {
    experts::rng r{c.seed ^ 0x5eedull};
    b.x.resize(static_cast<Eigen::Index>(opt.tokens), in_dim);
    for (Eigen::Index i = 0; i < b.x.size(); ++i)
      b.x.data()[i] = static_cast<float>(r.normal());
    b.labels.assign(opt.tokens, -1);
    b.what = std::to_string(opt.tokens) + " random N(0, 1) tokens";
  }
  return b;
}

std::string active_text(const experts::activation_set& a, size_t t) {
  auto es = a.experts_of(t);
  auto gs = a.gates_of(t);
  if (es.empty())
    return "-";
  std::string s;
  char buf[32];
  for (size_t i = 0; i < es.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%se%d %.2f", i ? " " : "", es[i], gs[i]);
    s += buf;
  }
  return s;
}

std::string class_name(const experts::model_config& c, Eigen::Index cls) {
  if (c.classes == 10 && c.input_dim == experts::fashion_mnist_pixels)
    return std::string{experts::fashion_mnist_classes[cls]};
  return "class " + std::to_string(cls);
}

void run(const options& opt) {
  auto m = opt.source.load();
  const auto& c = m.config;
  auto be = kernels::make_backend(opt.backend);
  if (!be)
    throw command_error{be.error().message};
  auto in = make_input(opt, c);
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
            << (*be)->name() << ", on " << in.what << "\n";
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto& lc = c.layers[l];
    std::cout << "  layer " << l << ": " << to_string(lc.kind);
    if (lc.kind == experts::layer_kind::eoe)
      std::cout << " " << to_string(lc.mode);
    if (lc.kind != experts::layer_kind::dense)
      std::cout << ", " << lc.experts << " experts";
    if (lc.kind != experts::layer_kind::dense
        && !(lc.kind == experts::layer_kind::eoe
             && lc.mode == experts::activation_mode::threshold))
      std::cout << ", k=" << lc.k;
    if (lc.affinity)
      std::cout << ", affinity";
    std::cout << "\n";
  }
  std::cout << "active experts (gate) per token and layer:\n";
  for (Eigen::Index t = 0; t < in.x.rows(); ++t) {
    std::cout << "  token " << t;
    if (in.labels[t] >= 0)
      std::cout << " [" << class_name(c, in.labels[t]) << "]";
    std::cout << "\n";
    for (size_t l = 0; l < res->layers.size(); ++l)
      std::cout << "    L" << l << ": " << active_text(res->layers[l].active, t) << "\n";
    if (c.classes > 0) {
      Eigen::Index best = 0;
      res->output.row(t).maxCoeff(&best);
      std::cout << "    -> " << class_name(c, best) << "\n";
    }
  }
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
                  "when the model takes 784 inputs")
    ->check(CLI::IsMember({"auto", "fashion", "random"}));
  cmd->add_option("--backend", opt->backend, "math backend")
    ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--json", opt->json, "one JSON object per token");
  cmd->callback([opt] { run(*opt); });
}

} // namespace eoe::cli
