// eoe ctl: membership changes of a running cluster; eoe bench load: the load generator.

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "net/client.hpp"
#include "net/load_generator.hpp"
#include "net/cluster_link.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/tls_options.hpp"

#include <caf/scoped_actor.hpp>

#include <cstdlib>
#include <cstdio>
#include <iostream>

namespace eoe::cli {

namespace {

struct connection {
  net::client_system client;
  caf::actor_system& sys = client.sys;
  actors::coordinator_actor coordinator;

  connection(const std::string& address, const tls_options& tls) : client(tls.resolve()) {
    auto c = net::connect(sys, address);
    if (!c)
      throw command_error{"no coordinator at " + address + ": " + actors::describe(c.error())};
    coordinator = *c;
  }

  /// Sends a membership change and prints the epoch it made.
  template <class... Ts>
  void change(const std::string& what, Ts&&... xs) {
    caf::scoped_actor self{sys};
    self->request(coordinator, std::chrono::seconds(60), std::forward<Ts>(xs)...)
      .receive([&](std::uint64_t epoch) { std::cout << what << ": epoch " << epoch << "\n"; },
               [&](const caf::error& err) { throw command_error{actors::describe(err)}; });
  }
};

bool parse_expert(const std::string& s, std::uint32_t& layer, std::uint32_t& id) {
  const auto dot = s.find('.');
  try {
    size_t a = 0, b = 0;
    layer = static_cast<std::uint32_t>(std::stoul(s.substr(0, dot), &a));
    id = static_cast<std::uint32_t>(std::stoul(s.substr(dot + 1), &b));
    return dot != std::string::npos && a == dot && b == s.size() - dot - 1;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace

void add_ctl(CLI::App& app) {
  auto* ctl = app.add_subcommand("ctl", "Change the membership of a running cluster");
  ctl->require_subcommand(1);
  auto address = std::make_shared<std::string>();
  ctl->add_option("--connect", *address, "HOST:PORT of the coordinator")->required();
  auto tls = std::make_shared<tls_options>();
  tls->add(ctl);
  {
    auto* cmd = ctl->add_subcommand("add-expert", "Add an expert to an eoe layer (a new epoch)");
    struct options {
      std::uint32_t layer = 0;
      std::string node, init = "zero";
    };
    auto opt = std::make_shared<options>();
    cmd->add_option("--layer", opt->layer, "config layer")->required();
    cmd->add_option("--node", opt->node, "node to run it on")->required();
    cmd->add_option("--init", opt->init,
                    "zero (changes nothing until trained), clone:L.E (split an expert of a "
                    "threshold layer), checkpoint:FILE[:L.E] (weights from a checkpoint)");
    cmd->callback([address, tls, opt] {
      connection c{*address, *tls};
      c.change("added an expert to layer " + std::to_string(opt->layer) + " on " + opt->node,
               actors::add_expert_atom::value, opt->layer, opt->node, opt->init);
    });
  }
  {
    auto* cmd = ctl->add_subcommand(
      "remove-expert", "Remove an expert (it finishes its requests, then exits)");
    auto name = std::make_shared<std::string>();
    cmd->add_option("expert", *name, "LAYER.EXPERT, for example 1.3")->required();
    cmd->callback([address, tls, name] {
      std::uint32_t layer = 0, id = 0;
      if (!parse_expert(*name, layer, id))
        throw command_error{"'" + *name + "' is not LAYER.EXPERT (for example 1.3)"};
      connection c{*address, *tls};
      c.change("removed expert " + *name, actors::remove_expert_atom::value, layer, id);
    });
  }
  {
    auto* cmd = ctl->add_subcommand("drain-node", "Move every expert off a node (a new epoch)");
    auto node = std::make_shared<std::string>();
    cmd->add_option("node", *node, "node name")->required();
    cmd->callback([address, tls, node] {
      connection c{*address, *tls};
      c.change("drained node " + *node, actors::drain_atom::value, *node);
    });
  }
  {
    auto* cmd = ctl->add_subcommand(
      "add-node", "Register a running node (eoe node --listen ...) with the cluster");
    auto name = std::make_shared<std::string>();
    auto node_address = std::make_shared<std::string>();
    cmd->add_option("--name", *name, "the node's name")->required();
    cmd->add_option("--address", *node_address, "HOST:PORT where the node listens")->required();
    auto secret = std::make_shared<std::string>();
    cmd->add_option("--secret", *secret,
                    "the cluster's secret (default: the environment's EOE_CLUSTER_SECRET)");
    cmd->callback([address, tls, name, node_address, secret] {
      if (const char* env = std::getenv("EOE_CLUSTER_SECRET"); secret->empty() && env)
        *secret = env;
      connection c{*address, *tls};
      // Without TLS, CAF makes the head dial the node by itself (automatic connections); over
      // TLS it does not (cluster_link), and the node would be reached only through this
      // short-lived process.
      if (net::uses_tls(c.sys))
        throw command_error{"add-node over TLS: start the node with `eoe node --join "
                            + *address + " --tls-ca ... --tls-cert ... --tls-key ...` instead "
                            "(it dials the head itself)"};
      std::string host;
      std::uint16_t port = 0;
      if (!net::split_address(*node_address, host, port))
        throw command_error{"'" + *node_address + "' is not HOST:PORT"};
      auto agent = net::remote_actor<actors::node_agent_actor>(c.sys, host, port);
      if (!agent)
        throw command_error{"no node at " + *node_address + ": " + actors::describe(agent.error())};
      caf::scoped_actor self{c.sys};
      self->request(c.coordinator, std::chrono::seconds(30), actors::join_atom::value, *name,
                    *node_address, *agent, *secret)
        .receive([&](actors::ok_atom) { std::cout << "node " << *name << " joined\n"; },
                 [&](const caf::error& err) { throw command_error{actors::describe(err)}; });
    });
  }
}

void add_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Load and measure a running cluster");
  bench->require_subcommand(1);
  auto* cmd = bench->add_subcommand(
    "load", "Requests at a fixed concurrency, each checked against its epoch's reference");
  auto address = std::make_shared<std::string>();
  auto opt = std::make_shared<net::load_options>();
  cmd->add_option("--connect", *address, "HOST:PORT of the coordinator")->required();
  auto tls = std::make_shared<tls_options>();
  tls->add(cmd);
  cmd->add_option("--requests", opt->requests, "requests to send")->check(CLI::Range(1, 100000000));
  cmd->add_option("--concurrency", opt->concurrency, "requests in flight")
    ->check(CLI::Range(1, 100000));
  cmd->add_option("--tokens", opt->tokens, "tokens per request")->check(CLI::Range(1, 100000));
  cmd->add_option("--deadline-ms", opt->deadline_ms, "per-request deadline")
    ->check(CLI::Range(1, 3'600'000));
  cmd->add_option("--seed", opt->seed, "request i's tokens come from this seed and i");
  cmd->callback([address, tls, opt] {
    connection c{*address, *tls};
    const auto r = net::run_load(c.sys, c.coordinator, *opt);
    char line[256];
    std::snprintf(line, sizeof line,
                  "%zu requests at concurrency %zu: %zu ok, %zu wrong, %zu failed with an error, "
                  "%zu lost\n",
                  opt->requests, opt->concurrency, r.ok, r.wrong, r.failed, r.lost);
    std::cout << line;
    std::snprintf(line, sizeof line,
                  "latency p50 %.2f ms, p99 %.2f ms; %.0f requests/s; worst |mesh - reference| %g\n",
                  net::quantile(r.latency_ms, 0.5), net::quantile(r.latency_ms, 0.99),
                  static_cast<double>(opt->requests) / r.seconds, r.worst_difference);
    std::cout << line << "answers per epoch:";
    for (auto& [epoch, n] : r.per_epoch)
      std::cout << " " << epoch << ":" << n;
    std::cout << "\n";
    for (auto& [text, n] : r.errors)
      std::cout << "  " << n << " x " << text << "\n";
    if (r.wrong + r.lost > 0)
      throw command_error{"wrong or lost answers", 3};
  });
  add_bench_serve(*bench);
}

} // namespace eoe::cli
