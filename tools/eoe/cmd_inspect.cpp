// eoe inspect FILE: parameter and memory accounting of a config or a checkpoint.

#include "experts/model/accounting.hpp"
#include "experts/model/checkpoint.hpp"
#include "tools/eoe/commands.hpp"

#include <fstream>
#include <iostream>
#include <string_view>

namespace eoe::cli {

namespace {

/// Whether a file is read as a checkpoint rather than a model config: by its magic number, or
/// (the magic damaged) by the binary header a checkpoint has, its version and lengths in bytes
/// [8, 20). A config is text: TOML holds no control character but tab, LF and CR. A damaged
/// checkpoint is then said to be one ("not an eoe checkpoint (bad magic: ...)"), not a TOML
/// file with odd characters.
bool looks_like_checkpoint(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  char head[64] = {};
  in.read(head, sizeof head);
  const auto n = static_cast<size_t>(in.gcount());
  if (n >= 8 && std::string_view{head, 8} == std::string_view{"EOECKPT\0", 8})
    return true;
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(head[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
      return true;
  }
  return false;
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
