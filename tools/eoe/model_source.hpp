#pragma once
// Where a command's model comes from: --checkpoint FILE, --config FILE (fresh weights from its
// seed) or, with neither, the embedded default config.

#include "experts/model/model.hpp"

#include <CLI/CLI.hpp>
#include <string>

namespace eoe::cli {

struct model_source {
  std::string config;
  std::string checkpoint;

  /// Adds --config and --checkpoint (mutually exclusive) to a subcommand.
  void add_options(CLI::App& cmd);

  /// The model, or throws command_error naming what went wrong.
  experts::model load() const;

  /// "checkpoint F", "config F (seed S)" or "embedded default (seed S)".
  std::string describe(const experts::model& m) const;
};

} // namespace eoe::cli
