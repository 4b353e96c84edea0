#include "tools/eoe/metrics_json.hpp"

namespace eoe::cli {

nlohmann::json to_json(const experts::layer_stats& s, bool classes) {
  nlohmann::json j{{"config_layer", s.config_layer},
                   {"kind", std::string{experts::to_string(s.kind)}},
                   {"experts", s.experts},
                   {"utilization", s.share},
                   {"token_share", s.token_share},
                   {"load_cv", s.load_cv},
                   {"mean_active", s.mean_active},
                   {"passthrough", s.passthrough},
                   {"max_entropy_bits", s.max_entropy},
                   {"expert_flops", s.expert_flops}};
  if (classes) {
    j["entropy_expert_given_class_bits"] = s.conditional_entropy;
    j["mutual_information_bits"] = s.mutual_information;
    j["class_expert_counts"] = s.class_expert;
  }
  return j;
}

nlohmann::json to_json(const experts::eval_result& r) {
  auto layers = nlohmann::json::array();
  for (auto& l : r.layers)
    layers.push_back(to_json(l, !r.language_model));
  if (r.language_model) // per predicted byte; no classes
    return {{"loss", r.loss},
            {"perplexity", r.perplexity()},
            {"bits_per_byte", r.bits_per_token()},
            {"accuracy", r.accuracy},
            {"bytes", r.examples},
            {"expert_flops_per_token", r.expert_flops},
            {"layers", layers}};
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
          {r.test.language_model ? "validation" : "test", to_json(r.test)}};
}

} // namespace eoe::cli
