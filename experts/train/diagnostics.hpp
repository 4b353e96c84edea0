#pragma once
// The MoE diagnostics of a run, per layer as run: expert utilisation, load balance (coefficient
// of variation), specialisation (entropy of the expert assignment per class, and the mutual
// information between class and expert), and the expert FLOPs an example actually costs.

#include "experts/nn/activation_set.hpp"
#include "experts/base/model_config.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// Diagnostics of one unrolled expert layer (attention layers have none).
struct layer_stats {
  size_t config_layer = 0;
  layer_kind kind = layer_kind::eoe;
  int experts = 0;
  std::vector<double> share;       ///< (E) share of the layer's assignments each expert took
  std::vector<double> token_share; ///< (E) share of tokens each expert was active on
  double load_cv = 0;              ///< std / mean of the per-expert assignment counts
  double mean_active = 0;          ///< active experts per token
  double passthrough = 0;          ///< share of tokens with no active expert
  double conditional_entropy = 0;  ///< H(expert | class) in bits, weighted over classes
  double mutual_information = 0;   ///< I(class; expert) in bits
  double max_entropy = 0;          ///< log2(E): H(expert | class) of no specialisation at all
  std::vector<std::vector<double>> class_expert; ///< [class][expert] assignment counts
  double expert_flops = 0;         ///< per example: scoring / routing plus the active experts
};

/// Counts assignments over batches, then turns them into layer_stats.
class stats_accumulator {
public:
  stats_accumulator(const model_config& c, int classes);

  /// One batch: the activation sets of every unrolled expert layer and the labels of its
  /// tokens (a language model has no classes: one class, every label 0).
  template <class S>
  void add(std::span<const basic_activation_set<S>* const> layers,
           std::span<const std::uint8_t> labels);

  std::vector<layer_stats> finish() const;

  /// Sum over layers of layer_stats::expert_flops.
  static double total_expert_flops(const std::vector<layer_stats>& s);

private:
  model_config config_;
  int classes_;
  std::vector<size_t> schedule_; ///< unrolled layer -> config layer
  std::vector<std::vector<std::vector<double>>> counts_; ///< [layer][class][expert]
  std::vector<double> active_entries_, passthrough_;
  double tokens_ = 0;
};

} // namespace eoe::experts
