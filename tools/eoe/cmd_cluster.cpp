// The cluster commands: eoe node, up, down, status and infer.

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "actors/wire.hpp"
#include "experts/model/forward.hpp"
#include "net/client.hpp"
#include "net/node_runtime.hpp"
#include "net/process_cluster.hpp"
#include "tools/eoe/activation_report.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/tls_options.hpp"
#include "tools/eoe/token_input.hpp"

#include <caf/send.hpp>

#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <unistd.h>

namespace eoe::cli {

namespace {

namespace fs = std::filesystem;

net::cluster_config load_cluster(const std::string& path) {
  auto c = path.empty() ? net::parse_cluster_config(net::default_cluster_text(), "<embedded default cluster>")
                        : net::load_cluster_config(path);
  if (!c)
    throw command_error{c.error().message};
  return std::move(*c);
}

/// Where `eoe up` keeps a cluster's pids, logs and (for the default) its cluster file.
fs::path run_dir(const net::cluster_config& c) {
  return fs::temp_directory_path() / ("eoe-" + std::to_string(getuid())) / c.name;
}

std::string head_address(const net::cluster_config& c) {
  return c.head_addresses();
}

std::vector<net::node_process> read_pids(const fs::path& dir) {
  std::vector<net::node_process> out;
  std::ifstream in{dir / "pids"};
  net::node_process p;
  while (in >> p.node >> p.pid) {
    p.log = dir / (p.node + ".log");
    out.push_back(p);
  }
  return out;
}

void run_up(const std::string& file, int timeout_s) {
  auto c = load_cluster(file);
  const auto dir = run_dir(c);
  fs::create_directories(dir);
  for (auto& p : read_pids(dir))
    if (kill(p.pid, 0) == 0)
      throw command_error{"cluster '" + c.name + "' is already running (node " + p.node + ", pid "
                          + std::to_string(p.pid) + "); eoe down first"};
  const auto cluster_file =
    file.empty() ? (dir / "cluster.toml").string() : fs::absolute(file).string();
  if (file.empty())
    std::ofstream{cluster_file} << net::default_cluster_text();
  auto nodes = net::start_nodes(c, cluster_file, net::self_executable(), dir);
  {
    std::ofstream out{dir / "pids", std::ios::trunc};
    for (auto& p : nodes)
      out << p.node << " " << p.pid << "\n";
  }
  if (auto err = net::wait_cluster_ready(c, nodes, std::chrono::seconds(timeout_s)); !err.empty()) {
    net::stop_nodes(c, nodes, std::chrono::seconds(2));
    fs::remove(dir / "pids");
    throw command_error{err + "; logs in " + dir.string()};
  }
  net::client_system client{c.tls};
  auto& sys = client.sys;
  std::string model = "?", checkpoint;
  if (auto coord = net::connect(sys, head_address(c)))
    if (auto s = net::status(sys, *coord)) {
      model = s->model;
      checkpoint = s->checkpoint;
    }
  std::cout << "cluster '" << c.name << "' ready: coordinator at " << head_address(c) << ", "
            << c.nodes.size() << " node(s), model '" << model << "' ("
            << (checkpoint.empty() ? std::string{"embedded default"} : checkpoint)
            << "); logs in " << dir.string() << "\n";
}

void run_down(const std::string& file) {
  auto c = load_cluster(file);
  const auto dir = run_dir(c);
  auto nodes = read_pids(dir);
  const auto count = nodes.size();
  const auto killed = net::stop_nodes(c, nodes);
  fs::remove(dir / "pids");
  std::cout << "cluster '" << c.name << "' down (" << count << " node process(es)"
            << (killed ? ", " + std::to_string(killed) + " killed after 10 s" : std::string{})
            << ")\n";
}

void run_status(const std::string& file, const std::string& address, const tls_options& tls) {
  // The flags' credentials, else those of the cluster file (when one is named).
  auto credentials = tls.resolve();
  std::string where = address;
  if (where.empty() || (!credentials.enabled() && !file.empty())) {
    const auto c = load_cluster(file);
    if (where.empty())
      where = head_address(c);
    if (!credentials.enabled())
      credentials = c.tls;
  }
  net::client_system client{credentials};
  auto& sys = client.sys;
  auto coord = net::connect(sys, where);
  if (!coord)
    throw command_error{"no coordinator at " + where + ": " + actors::describe(coord.error())};
  auto s = net::status(sys, *coord);
  if (!s)
    throw command_error{"status from " + where + ": " + actors::describe(s.error())};
  std::cout << "coordinator " << where << ": " << (s->epoch ? "ready" : "starting") << ", epoch "
            << s->epoch << ", model '" << s->model << "' ("
            << (s->checkpoint.empty() ? std::string{"embedded default"} : s->checkpoint) << ")\n"
            << "registry: " << (s->registry.empty() ? std::string{"in memory only ([cluster] state_dir unset)"} : s->registry) << "\n"
            << "requests: " << s->requests_served << " served, " << s->requests_failed
            << " failed, " << s->in_flight << " in flight\n"
            << "node  address              experts  kv positions  health\n";
  for (size_t n = 0; n < s->nodes.size(); ++n) {
    const auto& held = s->serving.kv_positions;
    char line[200];
    std::snprintf(line, sizeof line, "%-5s %-20s %7u  %12llu  %s\n", s->nodes[n].c_str(),
                  s->addresses[n].c_str(), s->experts_per_node[n],
                  static_cast<unsigned long long>(n < held.size() ? held[n] : 0),
                  s->alive[n] ? "alive"
                  : n < s->lost.size() && !s->lost[n].empty() ? ("lost: " + s->lost[n]).c_str()
                                                              : "lost");
    std::cout << line;
  }
  std::cout << "experts of epoch " << s->epoch << ":";
  for (auto& e : s->experts)
    std::cout << " " << e;
  std::cout << "\nlive epochs:";
  for (auto e : s->live_epochs)
    std::cout << " " << e;
  std::cout << "\n";
}

struct infer_options {
  std::string connect;
  tls_options tls;
  std::string input = "auto";
  size_t tokens = 8;
  bool reference = false;
  std::string checkpoint;
  bool checkpoint_given = false;
  std::uint32_t deadline_ms = 5000;
  bool trace = false;
};

void run_infer(const infer_options& opt) {
  net::client_system client{opt.tls.resolve()};
  auto& sys = client.sys;
  auto coord = net::connect(sys, opt.connect);
  if (!coord)
    throw command_error{"no coordinator at " + opt.connect + ": " + actors::describe(coord.error())};
  auto s = net::status(sys, *coord);
  if (!s)
    throw command_error{"status from " + opt.connect + ": " + actors::describe(s.error())};
  // The model's config tells the input width; the reference needs its weights too.
  const auto checkpoint = opt.checkpoint_given ? opt.checkpoint : s->checkpoint;
  std::shared_ptr<const experts::model> model;
  try {
    model = actors::load_model(checkpoint);
  } catch (const std::exception& e) {
    throw command_error{std::string{"the cluster's model: "} + e.what()};
  }
  const auto& c = model->config;
  auto in = load_tokens(opt.input, opt.tokens, c);
  actors::infer_request req;
  req.tokens = actors::to_wire(in.x);
  req.deadline_ms = opt.deadline_ms;
  req.trace = opt.trace;
  auto r = net::infer(sys, *coord, std::move(req), std::chrono::milliseconds(opt.deadline_ms + 5000));
  if (!r)
    throw command_error{actors::describe(r.error())};
  // Shown by stable id, as `eoe status` names the experts; compared by position in the
  // epoch's layer, as the reference forward numbers them.
  const auto got = actors::decode(*r);
  std::vector<std::uint32_t> layer_of;
  for (const auto& l : r->layers)
    layer_of.push_back(l.layer);
  std::cout << "request " << r->request << " (epoch " << r->epoch << ") on " << in.what
            << " through " << opt.connect << "\n"
            << describe_layers(c)
            << format_activations(c, actors::decode(*r, actors::expert_numbering::stable_ids),
                                  in.labels, layer_of);
  if (r->trace_id != 0)
    std::cout << "traced as " << r->trace_id << " (eoe-trace summary --trace " << r->trace_id
              << " <the cluster's [trace] dir>)\n";
  if (!opt.reference)
    return;
  auto be = kernels::make_cpu_backend();
  auto want = experts::forward(*be, *model, in.x);
  if (!want)
    throw command_error{want.error().message};
  const double diff = (got.output - want->output).cwiseAbs().maxCoeff();
  bool same_experts = got.layers.size() == want->layers.size();
  for (size_t l = 0; same_experts && l < got.layers.size(); ++l)
    same_experts = got.layers[l].active.experts == want->layers[l].active.experts
                   && got.layers[l].active.offsets == want->layers[l].active.offsets;
  std::cout << "reference (in-process, " << (checkpoint.empty() ? std::string{"embedded default"} : checkpoint)
            << "): max |mesh - reference| = " << diff << ", active experts "
            << (same_experts ? "identical" : "DIFFERENT") << "\n";
  if (!same_experts || diff > 1e-5)
    throw command_error{"the mesh and the reference disagree"};
}

} // namespace

void add_cluster_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("node", "Run one node of a cluster (what `eoe up` starts)");
    auto file = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    auto join = std::make_shared<std::string>();
    auto listen = std::make_shared<std::string>("127.0.0.1:0");
    auto workers = std::make_shared<std::uint32_t>(0);
    auto trace = std::make_shared<net::trace_settings>();
    auto secret = std::make_shared<std::string>();
    auto tls = std::make_shared<tls_options>();
    auto* cluster_opt = cmd->add_option("--cluster", *file,
                                        "cluster file (default: the embedded 3-node cluster)")
                          ->check(CLI::ExistingFile);
    cmd->add_option("--name", *name, "this node's name")->required();
    auto* join_opt = cmd->add_option("--join", *join,
                                     "HOST:PORT of a running cluster's coordinator to join");
    cmd->add_option("--listen", *listen, "with --join: HOST:PORT to listen on (port 0: any)");
    cmd->add_option("--workers", *workers, "with --join: middleman worker threads");
    cmd->add_option("--trace-dir", trace->dir,
                    "with --join: where this node writes its trace events (as [trace] dir)");
    cmd->add_option("--trace-collector", trace->collector,
                    "with --join: HOST:PORT of the cluster's trace collector (as [trace] collector)");
    cmd->add_option("--secret", *secret,
                    "with --join: the cluster's secret (default: the environment's EOE_CLUSTER_SECRET)");
    tls->add(cmd, false);
    join_opt->excludes(cluster_opt);
    cmd->callback([file, name, join, listen, workers, trace, secret, tls] {
      int rc = 0;
      if (join->empty() && (!tls->ca.empty() || !tls->cert.empty() || !tls->key.empty()))
        throw command_error{"--tls-ca, --tls-cert and --tls-key are for --join: the nodes of a "
                            "cluster file take its [tls]"};
      if (!join->empty()) {
        std::string host;
        std::uint16_t port = 0;
        const auto colon = listen->rfind(':');
        if (colon == std::string::npos)
          throw command_error{"--listen '" + *listen + "' is not HOST:PORT"};
        host = listen->substr(0, colon);
        try {
          port = static_cast<std::uint16_t>(std::stoul(listen->substr(colon + 1)));
        } catch (const std::exception&) {
          throw command_error{"--listen '" + *listen + "' is not HOST:PORT"};
        }
        std::string s = *secret;
        if (const char* env = std::getenv("EOE_CLUSTER_SECRET"); s.empty() && env)
          s = env;
        rc = net::run_joining_node(*join, *name, host, port, *workers, *trace, s, tls->resolve(),
                                   std::cout);
      } else {
        rc = net::run_node(load_cluster(*file), *name, std::cout);
      }
      if (rc != 0)
        throw command_error{"node " + *name + " failed", rc};
    });
  }
  {
    auto* cmd = app.add_subcommand("up", "Start every node of a cluster file: local processes, and over ssh the nodes with an ssh target");
    auto file = std::make_shared<std::string>();
    auto timeout = std::make_shared<int>(120);
    cmd->add_option("cluster", *file, "cluster file (default: the embedded 3-node cluster)")
      ->check(CLI::ExistingFile);
    cmd->add_option("--timeout", *timeout, "seconds to wait for the cluster to be ready")
      ->check(CLI::Range(1, 3600));
    cmd->callback([file, timeout] { run_up(*file, *timeout); });
  }
  {
    auto* cmd = app.add_subcommand("down", "Stop a cluster started by `eoe up`");
    auto file = std::make_shared<std::string>();
    cmd->add_option("cluster", *file, "cluster file (default: the embedded 3-node cluster)")
      ->check(CLI::ExistingFile);
    cmd->callback([file] { run_down(*file); });
  }
  {
    auto* cmd = app.add_subcommand("status", "Nodes, experts per node and health of a cluster");
    auto file = std::make_shared<std::string>();
    auto address = std::make_shared<std::string>();
    cmd->add_option("cluster", *file, "cluster file (default: the embedded 3-node cluster)")
      ->check(CLI::ExistingFile);
    cmd->add_option("--connect", *address, "HOST:PORT of the coordinator instead");
    auto tls = std::make_shared<tls_options>();
    tls->add(cmd, false);
    cmd->callback([file, address, tls] { run_status(*file, *address, *tls); });
  }
  {
    auto* cmd = app.add_subcommand("infer", "Send a request to a cluster");
    auto opt = std::make_shared<infer_options>();
    cmd->add_option("--connect", opt->connect, "HOST:PORT of the coordinator")->required();
    cmd->add_option("--input", opt->input,
                    "a text file (one token per line), fashion, random or auto");
    cmd->add_option("--tokens,-n", opt->tokens, "tokens for fashion/random input")
      ->check(CLI::Range(1, 100000));
    cmd->add_flag("--reference", opt->reference,
                  "also run the model in-process and print the largest difference");
    cmd->add_option("--checkpoint", opt->checkpoint,
                    "the model for --reference (default: the cluster's checkpoint path)")
      ->each([opt](const std::string&) { opt->checkpoint_given = true; });
    cmd->add_option("--deadline-ms", opt->deadline_ms, "the request's deadline")
      ->check(CLI::Range(1, 3'600'000));
    cmd->add_flag("--trace", opt->trace,
                  "trace this request (events go to the nodes' [trace] dir and collector)");
    opt->tls.add(cmd);
    cmd->callback([opt] { run_infer(*opt); });
  }
}

} // namespace eoe::cli
