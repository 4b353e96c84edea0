#include "tools/eoe/activation_report.hpp"

#include "experts/data/fashion_mnist.hpp"

#include <cstdio>
#include <sstream>

namespace eoe::cli {

std::string class_name(const experts::model_config& c, Eigen::Index cls) {
  if (c.classes == 10 && c.input_dim == experts::fashion_mnist_pixels)
    return std::string{experts::fashion_mnist_classes[cls]};
  return "class " + std::to_string(cls);
}

std::string describe_layers(const experts::model_config& c) {
  std::ostringstream os;
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto& lc = c.layers[l];
    os << "  layer " << l << ": " << to_string(lc.kind);
    if (lc.kind == experts::layer_kind::eoe)
      os << " " << to_string(lc.mode);
    if (lc.kind != experts::layer_kind::dense)
      os << ", " << lc.experts << " experts";
    if (lc.kind != experts::layer_kind::dense
        && !(lc.kind == experts::layer_kind::eoe
             && lc.mode == experts::activation_mode::threshold))
      os << ", k=" << lc.k;
    if (lc.affinity)
      os << ", affinity";
    if (lc.steps > 1)
      os << ", recurrent x" << lc.steps;
    os << "\n";
  }
  return os.str();
}

std::string format_activations(const experts::model_config& c, const experts::forward_result& r,
                               const std::vector<int>& labels,
                               const std::vector<std::uint32_t>& layer_of) {
  std::ostringstream os;
  char buf[48];
  const bool named = !layer_of.empty();
  os << (named ? "active experts L.E (gate) per token and layer as run:\n"
               : "active experts (gate) per token and layer:\n");
  for (Eigen::Index t = 0; t < r.output.rows(); ++t) {
    os << "  token " << t;
    if (static_cast<size_t>(t) < labels.size() && labels[t] >= 0)
      os << " [" << class_name(c, labels[t]) << "]";
    os << "\n";
    for (size_t l = 0; l < r.layers.size(); ++l) {
      auto es = r.layers[l].active.experts_of(static_cast<size_t>(t));
      auto gs = r.layers[l].active.gates_of(static_cast<size_t>(t));
      os << "    L" << l << ":";
      if (es.empty())
        os << " -";
      for (size_t i = 0; i < es.size(); ++i) {
        if (named && l < layer_of.size())
          std::snprintf(buf, sizeof buf, " %u.%d (%.2f)", layer_of[l], es[i], gs[i]);
        else
          std::snprintf(buf, sizeof buf, " e%d %.2f", es[i], gs[i]);
        os << buf;
      }
      os << "\n";
    }
    if (c.classes > 0) {
      Eigen::Index best = 0;
      r.output.row(t).maxCoeff(&best);
      os << "    -> " << class_name(c, best) << "\n";
    }
  }
  return os.str();
}

} // namespace eoe::cli
