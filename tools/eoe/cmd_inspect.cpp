// eoe inspect FILE: parameter and memory accounting of a config or a checkpoint.

#include "experts/model/accounting.hpp"
#include "experts/model/checkpoint.hpp"
#include "tools/eoe/commands.hpp"

#include <fstream>
#include <iostream>

namespace eoe::cli {

namespace {

bool looks_like_checkpoint(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  char head[8] = {};
  in.read(head, sizeof head);
  return in.gcount() == 8 && std::string_view{head, 7} == "EOECKPT";
}

} // namespace

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand(
    "inspect", "Parameters and memory per expert, per layer, total and active per token");
  auto path = std::make_shared<std::string>();
  cmd->add_option("file", *path, "model config (TOML) or checkpoint; default: embedded model")
    ->check(CLI::ExistingFile);
  cmd->callback([path] {
    experts::model_config config;
    if (path->empty()) {
      config = experts::default_model_config();
    } else if (looks_like_checkpoint(*path)) {
      auto m = experts::load_checkpoint(*path);
      if (!m)
        throw command_error{m.error().message};
      std::cout << *path << ": checkpoint verified (format version "
                << experts::checkpoint_version << ", every tensor's checksum matches)\n";
      config = m->config;
    } else {
      auto c = experts::load_model_config(*path);
      if (!c)
        throw command_error{c.error().message};
      config = *c;
    }
    std::cout << experts::format_account(config, experts::account(config));
  });
}

} // namespace eoe::cli
