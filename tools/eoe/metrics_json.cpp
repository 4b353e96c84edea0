#include "tools/eoe/metrics_json.hpp"

namespace eoe::cli {

nlohmann::json to_json(const experts::layer_stats& s) {
  return {{"config_layer", s.config_layer},
          {"kind", std::string{experts::to_string(s.kind)}},
          {"experts", s.experts},
          {"utilization", s.share},
          {"token_share", s.token_share},
          {"load_cv", s.load_cv},
          {"mean_active", s.mean_active},
          {"passthrough", s.passthrough},
          {"entropy_expert_given_class_bits", s.conditional_entropy},
          {"mutual_information_bits", s.mutual_information},
          {"max_entropy_bits", s.max_entropy},
          {"expert_flops", s.expert_flops},
          {"class_expert_counts", s.class_expert}};
}

nlohmann::json to_json(const experts::eval_result& r) {
  auto layers = nlohmann::json::array();
  for (auto& l : r.layers)
    layers.push_back(to_json(l));
  return {{"loss", r.loss},
          {"accuracy", r.accuracy},
          {"examples", r.examples},
          {"expert_flops_per_example", r.expert_flops},
          {"layers", layers}};
}

nlohmann::json to_json(const experts::epoch_report& r) {
  auto train_layers = nlohmann::json::array();
  for (auto& l : r.train_layers)
    train_layers.push_back({{"load_cv", l.load_cv}, {"utilization", l.share}});
  return {{"epoch", r.epoch},
          {"train_loss", r.train_loss},
          {"train_accuracy", r.train_accuracy},
          {"lr", r.lr},
          {"epoch_seconds", r.seconds},
          {"train_seconds", r.elapsed},
          {"train_layers", train_layers},
          {"test", to_json(r.test)}};
}

} // namespace eoe::cli
