#include "experts/train/diagnostics.hpp"

#include <cmath>
#include <stdexcept>

namespace eoe::experts {

stats_accumulator::stats_accumulator(const model_config& c, int classes)
  : config_(c), classes_(classes) {
  for (size_t l = 0; l < c.layers.size(); ++l)
    if (c.layers[l].kind != layer_kind::attention) // expert layers only
      schedule_.insert(schedule_.end(), static_cast<size_t>(c.layers[l].steps), l);
  counts_.resize(schedule_.size());
  for (size_t u = 0; u < schedule_.size(); ++u)
    counts_[u].assign(static_cast<size_t>(classes),
                      std::vector<double>(static_cast<size_t>(c.layers[schedule_[u]].experts), 0));
  active_entries_.assign(schedule_.size(), 0);
  passthrough_.assign(schedule_.size(), 0);
}

template <class S>
void stats_accumulator::add(std::span<const basic_activation_set<S>* const> layers,
                            std::span<const std::uint8_t> labels) {
  if (layers.size() != schedule_.size())
    throw std::invalid_argument("stats_accumulator: one activation set per unrolled expert layer");
  for (size_t u = 0; u < layers.size(); ++u) {
    const auto& a = *layers[u];
    for (size_t t = 0; t < a.tokens(); ++t) {
      auto es = a.experts_of(t);
      passthrough_[u] += es.empty();
      active_entries_[u] += static_cast<double>(es.size());
      for (auto e : es)
        counts_[u][labels[t]][e] += 1;
    }
  }
  tokens_ += static_cast<double>(labels.size());
}

template void stats_accumulator::add<float>(std::span<const basic_activation_set<float>* const>,
                                            std::span<const std::uint8_t>);
template void stats_accumulator::add<double>(std::span<const basic_activation_set<double>* const>,
                                             std::span<const std::uint8_t>);

namespace {

double entropy_bits(const std::vector<double>& counts) {
  double total = 0, h = 0;
  for (double c : counts)
    total += c;
  if (total <= 0)
    return 0;
  for (double c : counts)
    if (c > 0)
      h -= (c / total) * std::log2(c / total);
  return h;
}

} // namespace

std::vector<layer_stats> stats_accumulator::finish() const {
  std::vector<layer_stats> out;
  const double d = config_.dim;
  for (size_t u = 0; u < schedule_.size(); ++u) {
    const auto& lc = config_.layers[schedule_[u]];
    layer_stats s;
    s.config_layer = schedule_[u];
    s.kind = lc.kind;
    s.experts = lc.experts;
    s.class_expert = counts_[u];
    std::vector<double> per_expert(static_cast<size_t>(lc.experts), 0);
    double total = 0;
    for (auto& row : counts_[u])
      for (size_t e = 0; e < row.size(); ++e) {
        per_expert[e] += row[e];
        total += row[e];
      }
    for (size_t e = 0; e < per_expert.size(); ++e) {
      s.share.push_back(total > 0 ? per_expert[e] / total : 0);
      s.token_share.push_back(tokens_ > 0 ? per_expert[e] / tokens_ : 0);
    }
    const double mean = total / lc.experts;
    double var = 0;
    for (double c : per_expert)
      var += (c - mean) * (c - mean);
    var /= lc.experts;
    s.load_cv = mean > 0 ? std::sqrt(var) / mean : 0;
    s.mean_active = tokens_ > 0 ? active_entries_[u] / tokens_ : 0;
    s.passthrough = tokens_ > 0 ? passthrough_[u] / tokens_ : 0;
    // H(E | C) = sum_c p(c) H(E | C = c); I(C; E) = H(E) - H(E | C).
    for (auto& row : counts_[u]) {
      double row_total = 0;
      for (double c : row)
        row_total += c;
      if (total > 0)
        s.conditional_entropy += (row_total / total) * entropy_bits(row);
    }
    s.mutual_information = entropy_bits(per_expert) - s.conditional_entropy;
    s.max_entropy = std::log2(static_cast<double>(lc.experts));
    // FLOPs per example: 2 per multiply-add.
    const double h = lc.hidden;
    const bool factored = lc.kind == layer_kind::eoe && lc.rank > 0;
    const double first_in = factored ? lc.rank : d;
    const double per_active = 2 * (first_in * h + h * d);
    double fixed = 0;
    if (lc.kind == layer_kind::eoe) // every expert scores itself: x A, or x W1[:, :n]
      fixed = 2 * lc.experts * d * (factored ? lc.rank : lc.score_columns);
    else if (lc.kind == layer_kind::router)
      fixed = 2 * d * lc.experts;
    s.expert_flops = fixed + s.mean_active * per_active;
    out.push_back(std::move(s));
  }
  return out;
}

double stats_accumulator::total_expert_flops(const std::vector<layer_stats>& s) {
  double f = 0;
  for (auto& l : s)
    f += l.expert_flops;
  return f;
}

} // namespace eoe::experts
