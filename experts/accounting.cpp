#include "experts/accounting.hpp"

#include <cstdio>
#include <sstream>

namespace eoe::experts {

model_account account(const model_config& c) {
  model_account a;
  const std::uint64_t d = c.dim;
  if (c.input_dim > 0)
    a.embedding = static_cast<std::uint64_t>(c.input_dim) * d + d;
  if (c.classes > 0)
    a.head = d * c.classes + c.classes;
  a.total = a.embedding + a.head;
  a.active = a.total;
  a.flops = 2 * a.total;
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto& lc = c.layers[l];
    layer_account la;
    la.kind = lc.kind;
    la.experts = lc.experts;
    const std::uint64_t h = lc.hidden, e = lc.experts;
    const std::uint64_t first_in = lc.kind == layer_kind::eoe ? lc.rank : d; // rows of w1
    const std::uint64_t scoring = lc.kind == layer_kind::eoe ? d * lc.rank : 0;
    const std::uint64_t rest = first_in * h + h * d + (lc.bias ? h + d : 0);
    la.per_expert = scoring + rest;
    if (lc.kind == layer_kind::router)
      la.shared += d * e;
    if (lc.affinity)
      la.shared += static_cast<std::uint64_t>(c.experts_before(l)) * e;
    if (lc.kind == layer_kind::eoe)
      la.shared += 2 * e; // tau (threshold) or the selection bias (topk), and the gate bias
    la.total = e * la.per_expert + la.shared;
    const bool threshold = lc.kind == layer_kind::eoe && lc.mode == activation_mode::threshold;
    const std::uint64_t k = lc.kind == layer_kind::dense ? 1 : threshold ? e : lc.k;
    la.active = e * scoring + k * rest + la.shared; // per step; weights are shared across steps
    la.active_is_bound = threshold;
    la.steps = lc.steps;
    la.flops = 2 * la.active * static_cast<std::uint64_t>(lc.steps);
    a.flops += la.flops;
    a.total += la.total;
    a.active += la.active;
    a.active_is_bound = a.active_is_bound || threshold;
    a.layers.push_back(la);
  }
  return a;
}

std::string thousands(std::uint64_t n) {
  auto s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3)
    s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string mebibytes(std::uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

namespace {

void row(std::ostringstream& os, const std::string& what, std::uint64_t params,
         const std::string& mark = "") {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-26s %2s%15s", what.c_str(), mark.c_str(),
                thousands(params).c_str());
  os << buf;
  for (auto f : storage_formats)
    os << "  " << std::string(13 - std::min<size_t>(13, mebibytes(params * f.bytes).size()), ' ')
       << mebibytes(params * f.bytes);
  os << "\n";
}

} // namespace

std::string format_account(const model_config& c, const model_account& a) {
  std::ostringstream os;
  os << "model '" << c.name << "': ";
  if (c.input_dim > 0)
    os << c.input_dim << " -> ";
  os << "D=" << c.dim << ", " << c.layers.size() << " layer" << (c.layers.size() == 1 ? "" : "s");
  if (c.classes > 0)
    os << " -> " << c.classes << " classes";
  os << "\n\n";
  char head[256];
  std::snprintf(head, sizeof head, "%-26s %2s%15s  %13s  %13s  %13s\n", "", "", "parameters",
                "fp32", "bf16", "int8");
  os << head;
  if (a.embedding)
    row(os, "embedding", a.embedding);
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const auto& la = a.layers[l];
    const auto& lc = c.layers[l];
    std::string name = "layer " + std::to_string(l) + " " + std::string{to_string(la.kind)};
    if (lc.kind == layer_kind::eoe)
      name += " " + std::string{to_string(lc.mode)};
    os << name << ": " << la.experts << " x FFN " << c.dim << " -> " << lc.hidden << " -> "
       << c.dim;
    if (lc.kind == layer_kind::eoe)
      os << " (A rank " << lc.rank << ")";
    if (lc.kind != layer_kind::dense && !(lc.kind == layer_kind::eoe && lc.mode == activation_mode::threshold))
      os << ", k=" << lc.k;
    os << (lc.bias ? "" : ", no bias") << "\n";
    row(os, "  per expert", la.per_expert);
    if (la.shared)
      row(os, "  router/affinity/tau/bias", la.shared);
    row(os, "  layer total", la.total);
    row(os, "  active per token", la.active, la.active_is_bound ? "<=" : "");
    if (la.steps > 1)
      os << "  recurrent: the weights above run " << la.steps << " steps per token\n";
  }
  if (a.head)
    row(os, "head", a.head);
  os << "\n";
  row(os, "total", a.total);
  row(os, "active per token", a.active, a.active_is_bound ? "<=" : "");
  os << "active FLOPs per token " << (a.active_is_bound ? "<= " : "") << thousands(a.flops)
     << " (2 per multiply-add, recurrent steps counted)\n";
  os << "\nint8 counts one byte per weight (quantisation scales not included);"
     << " MiB = 2^20 bytes.\n";
  return os.str();
}

} // namespace eoe::experts
