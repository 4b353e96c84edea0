#include "tools/eoe/report.hpp"

#include "experts/fashion_mnist.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/svg_plot.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace eoe::cli {

std::string format_eval(const experts::model_config& c, const experts::eval_result& r) {
  std::ostringstream os;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "accuracy %.2f%%  loss %.4f  on %zu examples; expert FLOPs per example %.3g\n",
                100 * r.accuracy, r.loss, r.examples, r.expert_flops);
  os << buf;
  os << "layer  kind       experts  active/token  pass-through  load CV  H(E|class)  I(class;E)"
        "  utilization\n";
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
    std::snprintf(buf, sizeof buf, "%5zu  %-10s %7d  %12.2f  %11.1f%%  %7.3f  %6.2f/%-4.2g %10.3f  %s\n",
                  u, kind.c_str(), s.experts, s.mean_active, 100 * s.passthrough, s.load_cv,
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

std::vector<std::string> write_plots(const std::string& prefix, const experts::model_config& c,
                                     const std::vector<experts::epoch_report>& epochs) {
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
