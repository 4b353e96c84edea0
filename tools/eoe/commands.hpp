#pragma once
// The subcommands of the eoe CLI; each file adds one to the app.

#include <CLI/CLI.hpp>

namespace eoe::cli {

void add_inspect(CLI::App& app);
void add_init(CLI::App& app);
void add_forward(CLI::App& app);
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);
void add_cluster_commands(CLI::App& app);
void add_ctl(CLI::App& app);
void add_bench(CLI::App& app);
void add_bench_serve(CLI::App& bench); ///< eoe bench serve (under add_bench's subcommand)

/// Thrown by a subcommand to end with an error message and exit code 1 (or `code`).
struct command_error {
  std::string message;
  int code = 1;
};

} // namespace eoe::cli
