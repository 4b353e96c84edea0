#include "tools/eoe/model_source.hpp"

#include "experts/model/checkpoint.hpp"
#include "tools/eoe/commands.hpp"

namespace eoe::cli {

void model_source::add_options(CLI::App& cmd) {
  auto* cfg = cmd.add_option("--config", config, "model config (TOML); fresh weights from its seed")
                ->check(CLI::ExistingFile);
  auto* ckpt = cmd.add_option("--checkpoint", checkpoint, "trained model checkpoint")
                 ->check(CLI::ExistingFile);
  cfg->excludes(ckpt);
}

experts::model model_source::load() const {
  if (!checkpoint.empty()) {
    auto m = experts::load_checkpoint(checkpoint);
    if (!m)
      throw command_error{m.error().message};
    return std::move(*m);
  }
  if (!config.empty()) {
    auto c = experts::load_model_config(config);
    if (!c)
      throw command_error{c.error().message};
    return experts::init_model(*c);
  }
  return experts::init_model(experts::default_model_config());
}

std::string model_source::describe(const experts::model& m) const {
  if (!checkpoint.empty())
    return "checkpoint " + checkpoint;
  const auto seed = " (fresh weights, seed " + std::to_string(m.config.seed) + ")";
  return (config.empty() ? std::string{"embedded default"} : "config " + config) + seed;
}

} // namespace eoe::cli
