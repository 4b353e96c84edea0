// eoe generate: text from a trained language model, streamed as it is sampled. In-process
// (--checkpoint: every attention layer's K/V in context_store KV shards, experts/model/lm_decode.hpp)
// or from a cluster (--connect: a session whose K/V live in the cluster's context shard
// actors, net/lm_client.hpp), with --reference checking the cluster's logits against the
// in-process decoder at every step.

#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/lm_decode.hpp"
#include "net/client.hpp"
#include "net/lm_client.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/tls_options.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

namespace eoe::cli {

namespace {

struct generate_options {
  std::string checkpoint;
  std::string connect;
  tls_options tls;
  bool reference = false;
  std::string prompt = "\n";
  experts::sampling s;
  std::int64_t shard_capacity = 4096;
  std::uint32_t deadline_ms = 30000;
  bool trace = false;
};

std::shared_ptr<const experts::model> language_model(const std::string& path) {
  std::shared_ptr<const experts::model> m;
  try {
    m = actors::load_model(path);
  } catch (const std::exception& e) {
    throw command_error{e.what()};
  }
  if (!m->config.is_lm())
    throw command_error{(path.empty() ? std::string{"the embedded default"} : path) + ": '"
                        + m->config.name + "' is not a language model ([model] kind = \"lm\")"};
  return m;
}

void run_generate(const generate_options& opt) {
  if (opt.prompt.empty())
    throw command_error{"--prompt: needs at least one byte"};
  if (opt.connect.empty() && opt.checkpoint.empty())
    throw command_error{"--checkpoint FILE (in-process) or --connect HOST:PORT (a cluster)"};
  if (opt.reference && opt.connect.empty())
    throw command_error{"--reference compares a cluster with the in-process decoder: give "
                        "--connect"};
  auto stream = [](char c) {
    std::cout << c << std::flush;
  };
  std::cout << opt.prompt << std::flush;
  const auto start = std::chrono::steady_clock::now();
  std::string text, where = "in-process";
  std::optional<float> worst;
  if (opt.connect.empty()) {
    const auto m = language_model(opt.checkpoint);
    experts::lm_decoder d{*m, {opt.shard_capacity, 64}};
    text = experts::generate(d, m->config.context, opt.prompt, opt.s, stream);
  } else {
    net::client_system client{opt.tls.resolve()};
    auto& sys = client.sys;
    auto coord = net::connect(sys, opt.connect);
    if (!coord)
      throw command_error{"no coordinator at " + opt.connect + ": "
                          + actors::describe(coord.error())};
    auto status = net::status(sys, *coord);
    if (!status)
      throw command_error{"status from " + opt.connect + ": " + actors::describe(status.error())};
    // The model's context (and, for --reference, its weights): the cluster's checkpoint,
    // read here, unless --checkpoint names another copy.
    const auto m = language_model(opt.checkpoint.empty() ? status->checkpoint : opt.checkpoint);
    try {
      net::cluster_session session{sys, *coord, std::chrono::milliseconds(opt.deadline_ms)};
      session.trace(opt.trace);
      where = "from " + opt.connect + " (session " + std::to_string(session.id()) + ")";
      if (opt.reference) {
        experts::lm_decoder local{*m, {opt.shard_capacity, 64}};
        experts::compared_decoder both{session, local};
        text = experts::generate(both, m->config.context, opt.prompt, opt.s, stream);
        worst = both.worst();
        std::cout << std::endl;
        std::fprintf(stderr, "reference (in-process): max |cluster - reference| logits = %g over "
                             "%zu positions\n", static_cast<double>(both.worst()), both.rows());
      } else {
        text = experts::generate(session, m->config.context, opt.prompt, opt.s, stream);
      }
    } catch (const std::runtime_error& e) {
      std::cout << std::endl;
      throw command_error{e.what()};
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!worst)
    std::cout << std::endl; // before the stderr line
  std::fprintf(stderr, "%zu bytes in %.2f s (%.0f bytes/s) %s, prompt %zu bytes\n", text.size(),
               s, static_cast<double>(text.size()) / s, where.c_str(), opt.prompt.size());
  if (worst && *worst > 1e-5f)
    throw command_error{"the cluster and the in-process reference disagree"};
}

} // namespace

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
    "generate", "Text from a trained language model, in-process or from a cluster");
  auto opt = std::make_shared<generate_options>();
  cmd->add_option("--checkpoint", opt->checkpoint,
                  "trained language model (with --connect: the cluster's model, read here for "
                  "its context and --reference; default: the cluster's checkpoint path)")
    ->check(CLI::ExistingFile);
  cmd->add_option("--connect", opt->connect, "HOST:PORT of a cluster's coordinator");
  cmd->add_flag("--reference", opt->reference,
                "with --connect: also decode in-process and print the largest logit difference");
  cmd->add_option("--prompt", opt->prompt, "text the model continues")->capture_default_str();
  cmd->add_option("--tokens", opt->s.tokens, "bytes to generate")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", opt->s.temperature, "sampling temperature (0: greedy)")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--top-p", opt->s.top_p,
                  "nucleus sampling: the most likely bytes whose probabilities sum to P")
    ->capture_default_str()
    ->check(CLI::Range(1e-6, 1.0));
  cmd->add_option("--seed", opt->s.seed, "the same seed gives the same text")->capture_default_str();
  cmd->add_option("--shard-capacity", opt->shard_capacity, "positions per in-process KV shard")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--deadline-ms", opt->deadline_ms, "with --connect: each step's deadline")
    ->capture_default_str()
    ->check(CLI::Range(1, 3'600'000));
  cmd->add_flag("--trace", opt->trace,
                "with --connect: trace every step (events go to the nodes' [trace] dir)");
  opt->tls.add(cmd);
  cmd->callback([opt] { run_generate(*opt); });
}

} // namespace eoe::cli
