#include "experts/model/accounting.hpp"

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
  if (c.is_lm()) {
    a.embedding = static_cast<std::uint64_t>(c.vocab) * d;
    a.head = d * c.vocab + c.vocab + d; // with the final RMSNorm gain
  }
  a.total = a.embedding + a.head;
  a.active = c.is_lm() ? d + a.head : a.total; // a token reads one embedding row
  a.flops = c.is_lm() ? 2 * d * c.vocab : 2 * a.total;
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto& lc = c.layers[l];
    layer_account la;
    la.kind = lc.kind;
    la.experts = lc.experts;
    la.steps = lc.steps;
    if (lc.kind == layer_kind::attention) {
      // Q, K, V, O projections and the RMSNorm gain; a token's scores and weighted sum read
      // (context + 1) / 2 keys and values on average over a full window.
      la.shared = 4 * d * d + d;
      la.total = la.active = la.shared;
      la.flops = (2 * 4 * d * d + 2 * 2 * d * (static_cast<std::uint64_t>(c.context) + 1) / 2)
                 * static_cast<std::uint64_t>(lc.steps);
      a.flops += la.flops;
      a.total += la.total;
      a.active += la.active;
      a.layers.push_back(la);
      continue;
    }
    const std::uint64_t h = lc.hidden, e = lc.experts;
    // A factored EoE expert: A (D, r) for every token, then B, W2 when active. One that is not
    // factored: W1's first score_columns columns for every token, then all of W1 (those
    // columns again) and W2 when active.
    const bool factored = lc.kind == layer_kind::eoe && lc.rank > 0;
    const std::uint64_t first_in = factored ? lc.rank : d; // rows of w1
    const std::uint64_t scoring = lc.kind != layer_kind::eoe ? 0
                                  : factored               ? d * lc.rank
                                                           : d * lc.score_columns;
    const std::uint64_t rest = first_in * h + h * d + (lc.bias ? h + d : 0);
    la.per_expert = (factored ? scoring : 0) + rest; // parameters
    if (lc.kind == layer_kind::router)
      la.shared += d * e;
    if (lc.affinity)
      la.shared += static_cast<std::uint64_t>(c.experts_before(l)) * e;
    if (lc.kind == layer_kind::eoe)
      la.shared += 2 * e; // tau (threshold) or the selection bias (topk), and the gate bias
    if (c.is_lm())
      la.shared += d; // the RMSNorm gain of the layer's input
    la.total = e * la.per_expert + la.shared;
    const bool threshold = lc.kind == layer_kind::eoe && lc.mode == activation_mode::threshold;
    const std::uint64_t k = lc.kind == layer_kind::dense ? 1 : threshold ? e : lc.k;
    // Per step (weights are shared across steps). Not factored, an active expert's scoring
    // columns are touched once but multiplied twice.
    const std::uint64_t recomputed = lc.kind == layer_kind::eoe && !factored ? scoring : 0;
    la.active = e * scoring + k * (rest - recomputed) + la.shared;
    la.active_is_bound = threshold;
    la.flops = 2 * (la.active + k * recomputed) * static_cast<std::uint64_t>(lc.steps);
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
  if (c.is_lm())
    os << "language model, vocab " << c.vocab << ", context " << c.context << ", ";
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
    if (lc.kind == layer_kind::attention) {
      os << name << ": " << lc.heads << " heads of " << c.dim / lc.heads << ", RoPE base "
         << lc.rope_base << ", causal\n";
      row(os, "  layer total", la.total);
      continue;
    }
    if (lc.kind == layer_kind::eoe)
      name += " " + std::string{to_string(lc.mode)};
    os << name << ": " << la.experts << " x FFN " << c.dim << " -> " << lc.hidden << " -> "
       << c.dim;
    if (lc.kind == layer_kind::eoe && lc.rank > 0)
      os << " (A rank " << lc.rank << ")";
    if (lc.kind == layer_kind::eoe && lc.score_columns < lc.score_width())
      os << " (scored on " << lc.score_columns << (lc.rank > 0 ? " of u's" : " of W1's")
         << " columns)";
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
    row(os, c.is_lm() ? "head (with final norm)" : "head", a.head);
  os << "\n";
  row(os, "total", a.total);
  row(os, "active per token", a.active, a.active_is_bound ? "<=" : "");
  os << "active FLOPs per token " << (a.active_is_bound ? "<= " : "") << thousands(a.flops)
     << " (2 per multiply-add, recurrent steps counted"
     << (c.is_lm() ? "; attention at the mean position of a full context" : "") << ")\n";
  os << "\nint8 counts one byte per weight (quantisation scales not included);"
     << " MiB = 2^20 bytes.\n";
  return os.str();
}

} // namespace eoe::experts
