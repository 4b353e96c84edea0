#include "tools/eoe/report.hpp"

#include "experts/data/fashion_mnist.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/svg_plot.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace eoe::cli {

std::string format_eval(const experts::model_config& c, const experts::eval_result& r) {
  std::ostringstream os;
  char buf[512];
  const bool lm = r.language_model;
  if (lm)
    std::snprintf(buf, sizeof buf,
                  "validation loss %.4f nats/byte  perplexity %.3f  %.3f bits/byte  next-byte "
                  "accuracy %.2f%%  on %zu bytes; expert FLOPs per token %.3g\n",
                  r.loss, r.perplexity(), r.bits_per_token(), 100 * r.accuracy, r.examples,
                  r.expert_flops);
  else
    std::snprintf(buf, sizeof buf,
                  "accuracy %.2f%%  loss %.4f  on %zu examples; expert FLOPs per example %.3g\n",
                  100 * r.accuracy, r.loss, r.examples, r.expert_flops);
  os << buf;
  os << (lm ? "layer  kind       experts  active/token  pass-through  load CV  utilization\n"
            : "layer  kind       experts  active/token  pass-through  load CV  H(E|class)  "
              "I(class;E)  utilization\n");
  for (size_t u = 0; u < r.layers.size(); ++u) {
    const auto& s = r.layers[u];
    std::string kind{experts::to_string(s.kind)};
    const auto& lc = c.layers[s.config_layer];
    if (s.kind == experts::layer_kind::eoe)
      kind += lc.mode == experts::activation_mode::topk ? "/topk" : "/thr";
    std::string util;
    for (double v : s.share) {
      std::snprintf(buf, sizeof buf, "%s%.2f", util.empty() ? "" : " ", v);
      util += buf;
    }
    if (lm) // the config layer's index: attention layers in between have no statistics
      std::snprintf(buf, sizeof buf, "%5zu  %-10s %7d  %12.2f  %11.1f%%  %7.3f  %s\n",
                    s.config_layer, kind.c_str(), s.experts, s.mean_active, 100 * s.passthrough,
                    s.load_cv, util.c_str());
    else
      std::snprintf(buf, sizeof buf,
                    "%5zu  %-10s %7d  %12.2f  %11.1f%%  %7.3f  %6.2f/%-4.2g %10.3f  %s\n", u,
                    kind.c_str(), s.experts, s.mean_active, 100 * s.passthrough, s.load_cv,
                    s.conditional_entropy, s.max_entropy, s.mutual_information, util.c_str());
    os << buf;
  }
  return os.str();
}

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path, std::ios::trunc};
  out << text;
  if (!out)
    throw command_error{path + ": cannot write"};
}

} // namespace

namespace {

/// A language model's plots: loss and perplexity (train and validation), next-byte accuracy,
/// and each expert layer's utilisation (its share of the layer's assignments) per epoch.
std::vector<std::string> write_lm_plots(const std::string& prefix, const experts::model_config& c,
                                        const std::vector<experts::epoch_report>& epochs) {
  series train_loss{"train", {}, {}}, val_loss{"validation", {}, {}};
  series train_ppl{"train", {}, {}}, val_ppl{"validation", {}, {}};
  series train_acc{"train", {}, {}}, val_acc{"validation", {}, {}};
  for (auto& e : epochs) {
    const double x = e.epoch;
    train_loss.x.push_back(x);
    train_loss.y.push_back(e.train_loss);
    val_loss.x.push_back(x);
    val_loss.y.push_back(e.test.loss);
    train_ppl.x.push_back(x);
    train_ppl.y.push_back(std::exp(e.train_loss));
    val_ppl.x.push_back(x);
    val_ppl.y.push_back(e.test.perplexity());
    train_acc.x.push_back(x);
    train_acc.y.push_back(100 * e.train_accuracy);
    val_acc.x.push_back(x);
    val_acc.y.push_back(100 * e.test.accuracy);
  }
  std::vector<std::string> paths{prefix + ".loss.svg", prefix + ".perplexity.svg",
                                 prefix + ".accuracy.svg", prefix + ".experts.svg"};
  write_file(paths[0], line_chart("loss: model '" + c.name + "'", "epoch",
                                  "nats per byte (train: + aux)", {train_loss, val_loss}));
  write_file(paths[1], line_chart("perplexity: model '" + c.name + "'", "epoch",
                                  "perplexity per byte", {train_ppl, val_ppl}));
  write_file(paths[2], line_chart("next-byte accuracy: model '" + c.name + "'", "epoch",
                                  "accuracy %", {train_acc, val_acc}));
  std::vector<heatmap_panel> panels;
  if (!epochs.empty()) {
    const auto& layers = epochs.back().test.layers;
    for (size_t u = 0; u < layers.size(); ++u) {
      const auto& s = layers[u];
      if (s.experts < 2)
        continue; // a dense layer has nothing to share out
      heatmap_panel p;
      p.title = "layer " + std::to_string(s.config_layer) + " ("
                + std::string{experts::to_string(s.kind)} + ")";
      for (int e = 0; e < s.experts; ++e)
        p.row_labels.push_back("e" + std::to_string(e));
      for (auto& ep : epochs)
        p.col_labels.push_back(std::to_string(ep.epoch));
      p.values.assign(static_cast<size_t>(s.experts), std::vector<double>(epochs.size(), 0));
      for (size_t k = 0; k < epochs.size(); ++k)
        for (int e = 0; e < s.experts; ++e)
          if (u < epochs[k].test.layers.size())
            p.values[e][k] = epochs[k].test.layers[u].share[e];
      panels.push_back(std::move(p));
    }
  }
  write_file(paths[3], heatmaps("expert utilisation on the validation text per epoch (model '"
                                  + c.name + "'); shade: share of the layer's assignments",
                                panels));
  return paths;
}

} // namespace

std::vector<std::string> write_plots(const std::string& prefix, const experts::model_config& c,
                                     const std::vector<experts::epoch_report>& epochs) {
  if (c.is_lm())
    return write_lm_plots(prefix, c, epochs);
  series train_loss{"train", {}, {}}, test_loss{"test", {}, {}};
  series train_acc{"train", {}, {}}, test_acc{"test", {}, {}};
  for (auto& e : epochs) {
    const double x = e.epoch;
    train_loss.x.push_back(x);
    train_loss.y.push_back(e.train_loss);
    test_loss.x.push_back(x);
    test_loss.y.push_back(e.test.loss);
    train_acc.x.push_back(x);
    train_acc.y.push_back(100 * e.train_accuracy);
    test_acc.x.push_back(x);
    test_acc.y.push_back(100 * e.test.accuracy);
  }
  std::vector<std::string> paths{prefix + ".loss.svg", prefix + ".accuracy.svg",
                                 prefix + ".experts.svg"};
  write_file(paths[0], line_chart("loss: model '" + c.name + "'", "epoch", "cross-entropy (train: + aux)",
                                  {train_loss, test_loss}));
  write_file(paths[1], line_chart("accuracy: model '" + c.name + "'", "epoch", "accuracy %",
                                  {train_acc, test_acc}));
  std::vector<heatmap_panel> panels;
  if (!epochs.empty()) {
    const auto& layers = epochs.back().test.layers;
    for (size_t u = 0; u < layers.size(); ++u) {
      const auto& s = layers[u];
      heatmap_panel p;
      p.title = "layer " + std::to_string(u) + " (" + std::string{experts::to_string(s.kind)} + ")";
      for (int e = 0; e < s.experts; ++e)
        p.row_labels.push_back("e" + std::to_string(e));
      const bool fashion = c.classes == 10 && c.input_dim == experts::fashion_mnist_pixels;
      for (int k = 0; k < c.classes; ++k)
        p.col_labels.push_back(fashion ? std::string{experts::fashion_mnist_classes[k]}
                                       : "class " + std::to_string(k));
      p.values.assign(static_cast<size_t>(s.experts), std::vector<double>(c.classes, 0));
      for (int k = 0; k < c.classes; ++k)
        for (int e = 0; e < s.experts; ++e)
          p.values[e][k] = s.class_expert[k][e];
      panels.push_back(std::move(p));
    }
  }
  write_file(paths[2], heatmaps("expert x class assignments on the test set (model '" + c.name
                                  + "'); shade: share of the class's assignments",
                                panels));
  return paths;
}

} // namespace eoe::cli
