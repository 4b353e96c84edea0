// eoe generate: text from a trained language model, decoded in-process one byte at a time
// with every attention layer's K/V in context_store KV shards (experts/lm_decode.hpp).

#include "experts/checkpoint.hpp"
#include "experts/lm_decode.hpp"
#include "tools/eoe/commands.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>

namespace eoe::cli {

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Text from a trained language model (in-process)");
  struct options {
    std::string checkpoint;
    std::string prompt = "\n";
    experts::sampling s;
    std::int64_t shard_capacity = 4096;
  };
  auto opt = std::make_shared<options>();
  cmd->add_option("--checkpoint", opt->checkpoint, "trained language model")
    ->required()
    ->check(CLI::ExistingFile);
  cmd->add_option("--prompt", opt->prompt, "text the model continues")->capture_default_str();
  cmd->add_option("--tokens", opt->s.tokens, "bytes to generate")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", opt->s.temperature, "sampling temperature (0: greedy)")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--seed", opt->s.seed, "the same seed gives the same text")->capture_default_str();
  cmd->add_option("--shard-capacity", opt->shard_capacity, "positions per KV shard")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 30));
  cmd->callback([opt] {
    auto m = experts::load_checkpoint(opt->checkpoint);
    if (!m)
      throw command_error{m.error().message};
    if (!m->config.is_lm())
      throw command_error{opt->checkpoint + ": '" + m->config.name
                          + "' is not a language model ([model] kind = \"lm\")"};
    if (opt->prompt.empty())
      throw command_error{"--prompt: needs at least one byte"};
    const auto start = std::chrono::steady_clock::now();
    const auto text = experts::generate(*m, opt->prompt, opt->s, {opt->shard_capacity, 64});
    const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << opt->prompt << text << std::endl; // before the stderr line
    std::fprintf(stderr, "%zu bytes in %.2f s (%.0f bytes/s), prompt %zu bytes\n", text.size(), s,
                 static_cast<double>(text.size()) / s, opt->prompt.size());
  });
}

} // namespace eoe::cli
