// eoe init --out FILE: a checkpoint of freshly initialised weights.

#include "experts/model/checkpoint.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/model_source.hpp"

#include <iostream>

namespace eoe::cli {

void add_init(CLI::App& app) {
  auto* cmd = app.add_subcommand("init", "Write a checkpoint of freshly initialised weights");
  struct options {
    model_source source;
    std::string out;
    std::string dtype = "f32";
  };
  auto opt = std::make_shared<options>();
  cmd->add_option("--config", opt->source.config, "model config (TOML); default: embedded")
    ->check(CLI::ExistingFile);
  cmd->add_option("--out", opt->out, "checkpoint to write")->required();
  cmd->add_option("--dtype", opt->dtype, "storage type of the tensors")
    ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->callback([opt] {
    auto m = opt->source.load();
    auto dtype = opt->dtype == "bf16" ? experts::storage_dtype::bf16 : experts::storage_dtype::f32;
    if (auto ok = experts::save_checkpoint(m, opt->out, dtype); !ok)
      throw command_error{ok.error().message};
    std::cout << "wrote " << opt->out << ": model '" << m.config.name << "', "
              << opt->source.describe(m) << ", " << opt->dtype << "\n";
  });
}

} // namespace eoe::cli
