#include "net/node_runtime.hpp"

#include "actors/coordinator_actor.hpp"
#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "net/client.hpp"
#include "net/cluster_link.hpp"
#include "net/head_election.hpp"
#include "net/http_gateway.hpp"
#include "net/tcp_data_plane.hpp"
#include "net/trace_collector.hpp"
#include "net/trace_sink.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdlib>
#include <ostream>
#include <thread>

namespace eoe::net {

experts::expected<std::vector<std::vector<std::uint32_t>>>
resolve_placement(const cluster_config& c, const std::vector<std::string>& members,
                  const experts::model_config& m) {
  if (c.placement.empty())
    return actors::round_robin_placement(m, members.size());
  if (c.placement.size() != m.layers.size())
    return experts::fail(experts::errc::config_invalid,
                         "cluster '" + c.name + "': placement.layers lists "
                           + std::to_string(c.placement.size()) + " layers, model '" + m.name
                           + "' has " + std::to_string(m.layers.size()));
  std::vector<std::vector<std::uint32_t>> out(m.layers.size());
  for (size_t l = 0; l < m.layers.size(); ++l) {
    if (c.placement[l].size() != static_cast<size_t>(m.layers[l].experts))
      return experts::fail(experts::errc::config_invalid,
                           "cluster '" + c.name + "': placement.layers[" + std::to_string(l)
                             + "] places " + std::to_string(c.placement[l].size())
                             + " experts, layer " + std::to_string(l) + " of model '" + m.name
                             + "' has " + std::to_string(m.layers[l].experts));
    for (auto& node : c.placement[l]) {
      const auto at = std::find(members.begin(), members.end(), node);
      if (at == members.end())
        return experts::fail(experts::errc::config_invalid,
                             "cluster '" + c.name + "': placement.layers[" + std::to_string(l)
                               + "] places an expert on " + node
                               + ", a standby head (standbys host no experts)");
      out[l].push_back(static_cast<std::uint32_t>(at - members.begin()));
    }
  }
  return out;
}

namespace {

/// Exit code of a node whose agent is fenced by its head (declared lost while it was silent or
/// cut off): not 0, so that a unit with Restart=on-failure starts it again.
constexpr int fenced_exit = 4;

/// Waits until the node's agent and every other actor are done: 0 after a shutdown,
/// fenced_exit when the head fenced it.
int wait_node_done(caf::actor_system& sys, const actors::node_agent_actor& agent) {
  caf::error why;
  {
    caf::scoped_actor waiter{sys};
    waiter->monitor(agent);
    waiter->receive([&](caf::down_msg& dm) { why = std::move(dm.reason); });
  }
  sys.await_all_actors_done();
  return why.category() == actors::mesh_category
             && why.code() == static_cast<std::uint8_t>(actors::mesh_errc::node_lost)
           ? fenced_exit
           : 0;
}

/// The node's tracing for as long as it runs: the head's collector (when configured) and the
/// process's sink, installed for the actors and flushed and removed at the end.
struct node_tracing {
  std::unique_ptr<trace_collector> collector;
  std::shared_ptr<file_trace_sink> sink;

  ~node_tracing() {
    if (sink) {
      actors::tracing::install(nullptr);
      sink->flush();
    }
  }

  /// False (with a message in log) when the head cannot listen at the collector's address.
  bool start(const trace_settings& t, bool head, const tls_settings& tls, std::ostream& log) {
    if (!t.enabled())
      return true;
    try {
      if (head && !t.collector.empty()) {
        const auto colon = t.collector.rfind(':');
        collector = std::make_unique<trace_collector>(
          t.collector.substr(0, colon),
          static_cast<std::uint16_t>(std::stoi(t.collector.substr(colon + 1))), tls);
        log << "trace collector listening on " << t.collector
            << (tls.enabled() ? " (TLS)" : "") << std::endl;
      }
      sink = std::make_shared<file_trace_sink>(t.dir, t.collector, tls);
    } catch (const std::exception& e) {
      log << e.what() << "\n";
      return false;
    }
    actors::tracing::install(sink);
    return true;
  }
};

/// The node's data plane for as long as it runs: contributions between processes travel over
/// it instead of through CAF's middleman.
struct node_data_plane {
  std::shared_ptr<tcp_data_plane> plane;

  ~node_data_plane() {
    if (plane)
      actors::data_planes::install(nullptr);
  }

  /// Listens on the node's host, at any free port; false (with a message) when it cannot.
  bool start(const std::string& host, const tls_settings& tls, std::ostream& log) {
    try {
      plane = std::make_shared<tcp_data_plane>(host, 0, log, tls);
    } catch (const std::exception& e) {
      log << e.what() << "\n";
      return false;
    }
    actors::data_planes::install(plane);
    return true;
  }
};

} // namespace

int run_node(const cluster_config& c, const std::string& name, std::ostream& log) {
  const auto* me = c.find(name);
  if (!me) {
    log << "eoe node: cluster '" << c.name << "' has no node '" << name << "'\n";
    return 1;
  }
  const bool is_head = name == c.nodes[c.head_index()].name;
  node_tracing trace_runtime;
  if (!trace_runtime.start(c.trace, is_head, c.tls, log))
    return 1;
  node_data_plane data_plane;
  if (!data_plane.start(me->host, c.tls, log))
    return 1;
  // The mesh's parallelism is its actors: every GEMM runs on one thread.
  Eigen::setNbThreads(1);
  actors::mesh_config cfg;
  cfg.middleman_workers(c.middleman_workers).worker_threads(c.worker_threads).scheduler(c.scheduler);
  use_tls(cfg, c.tls);
  caf::actor_system sys{cfg};
  auto agent = sys.spawn(actors::node_agent_behavior, name);
  // With etcd, every head candidate campaigns; without, the cluster file's head is the head.
  const bool candidate =
    !c.registry.empty()
    && (c.heads.empty() ? name == c.head
                        : std::find(c.heads.begin(), c.heads.end(), name) != c.heads.end());
  const bool head = candidate || (c.registry.empty() && name == c.nodes[c.head_index()].name);
  const char* over = c.tls.enabled() ? " (TLS)" : "";
  if (!head) {
    auto port = publish(agent, me->port, me->host);
    if (!port) {
      log << "eoe node " << name << ": cannot listen on " << me->address() << ": "
          << sys.render(port.error()) << "\n";
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 1;
    }
    log << "node " << name << " listening on " << me->address() << ", data plane on "
        << data_plane.plane->address() << over << std::endl;
    return wait_node_done(sys, agent);
  }

  std::unique_ptr<head_lease> lease;
  std::shared_ptr<actors::registry_store> store;
  if (candidate) {
    auto client = etcd_client::parse(c.registry);
    if (!client) {
      log << "eoe node " << name << ": " << client.error().message << "\n";
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 1;
    }
    const auto keys = keys_of_cluster(c.name);
    lease = head_lease::win(*client, keys, name, log);
    if (!lease) { // the cluster was shut down while this one stood by
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 0;
    }
    store = etcd_registry(*client, keys, name);
  } else if (!c.state_dir.empty()) {
    store = actors::folder_registry(c.state_dir);
  }

  actors::coordinator_setup setup;
  setup.checkpoint = c.checkpoint;
  try {
    setup.model = actors::load_model(c.checkpoint);
  } catch (const std::exception& e) {
    log << "eoe node " << name << ": " << e.what() << "\n";
    anon_send_exit(agent, caf::exit_reason::user_shutdown);
    return 1;
  }
  setup.trace_sample = c.trace.sample;
  setup.kv_shard_positions = c.kv_shard_positions;
  setup.kv_block_size = c.kv_block_size;
  setup.kv_placement = c.kv_placement;
  setup.session_idle = std::chrono::seconds(c.session_idle_s);
  setup.max_batch_rows = c.max_batch_rows;
  setup.batches_in_flight = c.batches_in_flight;
  setup.max_step_tokens = c.max_step_tokens;
  setup.steps_in_flight = c.steps_in_flight;
  setup.heartbeat_ms = c.heartbeat_ms;
  setup.suspect_after_ms = c.suspect_after_ms;
  setup.secret = c.secret;
  if (const char* s = std::getenv("EOE_CLUSTER_SECRET"))
    setup.secret = s;
  setup.registry = store;
  setup.term = lease ? lease->term() : 0;
  setup.connector = connector_of(sys);
  if (store) {
    auto resumed = store->read(c.checkpoint, *setup.model);
    if (!resumed) {
      log << "eoe node " << name << ": " << resumed.error().message << "\n";
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 1;
    }
    setup.resume = std::move(*resumed);
  }
  // The nodes: the cluster file's, then (resuming) those that had joined with --join.
  struct wanted {
    std::string name, host;
    std::uint16_t port;
    bool joined, optional;
  };
  std::vector<wanted> nodes;
  const auto* record = setup.resume ? &setup.resume->record : nullptr;
  const auto recorded = [record](const std::string& node) -> const actors::registry_node* {
    if (record)
      for (auto& r : record->nodes)
        if (r.name == node)
          return &r;
    return nullptr;
  };
  // Standby heads host no experts (unless the registry places some on a node that was head).
  const std::string previous = lease ? lease->previous() : std::string{};
  for (auto& n : c.nodes) {
    const auto* r = recorded(n.name);
    const bool other_head = n.name != name && std::find(c.heads.begin(), c.heads.end(), n.name)
                                                != c.heads.end();
    if (other_head && !r)
      continue;
    // A node that joined again under its name (eoe node --join) listens where the registry
    // says, not where the cluster file does.
    std::string host = n.host;
    std::uint16_t port = n.port;
    if (r && r->lost.empty() && !r->address.empty())
      split_address(r->address, host, port);
    nodes.push_back({n.name, host, port, false, r && !r->lost.empty()});
  }
  if (record)
    for (auto& r : record->nodes) {
      if (!r.joined || c.find(r.name))
        continue;
      auto colon = r.address.rfind(':');
      std::uint16_t port = 0;
      try {
        port = static_cast<std::uint16_t>(std::stoul(r.address.substr(colon + 1)));
      } catch (const std::exception&) {
        colon = std::string::npos;
      }
      if (colon == std::string::npos) {
        log << "eoe node " << name << ": the registry's node " << r.name << " has no host:port ("
            << r.address << "); it is resumed as lost\n";
        port = 0;
      }
      nodes.push_back({r.name, r.address.substr(0, colon), port, true, true});
    }
  // The other nodes start at the same time: retry each for up to 30 seconds. Resuming, the
  // nodes are running already: one gets 5 s (3 s if it was lost or had joined), and one that
  // does not answer is lost (the registry's epoch goes on without its experts) rather than
  // holding the head back.
  for (auto& n : nodes) {
    if (n.name == name)
      setup.head = static_cast<std::uint32_t>(setup.nodes.size());
    setup.nodes.push_back(n.name);
    setup.addresses.push_back(n.host + ":" + std::to_string(n.port));
    setup.joined.push_back(n.joined);
    setup.absent.emplace_back();
    if (n.name == name) {
      setup.agents.push_back(agent);
      continue;
    }
    if (setup.resume && n.name == previous) { // its lease ended: it is gone, or it exits
      log << "eoe node " << name << ": the head before, " << n.name
          << ", lost its lease; resuming without it" << std::endl;
      setup.agents.emplace_back();
      setup.absent.back() = "the head before, " + n.name + ", lost its lease";
      continue;
    }
    const auto wait = std::chrono::seconds(n.optional ? 3 : setup.resume ? 5 : 30);
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
      auto remote = n.port ? remote_actor<actors::node_agent_actor>(sys, n.host, n.port)
                           : caf::expected<actors::node_agent_actor>{caf::sec::invalid_argument};
      if (remote) {
        setup.agents.push_back(*remote);
        break;
      }
      // A refused TLS link stays refused: say why at once.
      if (uses_tls(sys) && remote.error().category() == actors::mesh_category) {
        log << "eoe node " << name << ": node " << n.name << " at " << n.host << ":" << n.port
            << ": " << actors::describe(remote.error()) << "\n";
        anon_send_exit(agent, caf::exit_reason::user_shutdown);
        return 1;
      }
      if (std::chrono::steady_clock::now() > until || !n.port) {
        if (setup.resume) {
          log << "eoe node " << name << ": node " << n.name << " at " << n.host << ":" << n.port
              << " did not answer within " << wait.count() << " s; resuming without it"
              << std::endl;
          setup.agents.emplace_back();
          break;
        }
        log << "eoe node " << name << ": node " << n.name << " at " << n.host << ":" << n.port
            << " did not answer within 30 s: " << sys.render(remote.error()) << "\n";
        anon_send_exit(agent, caf::exit_reason::user_shutdown);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  {
    auto placement = resolve_placement(c, setup.nodes, setup.model->config);
    if (!placement) {
      log << "eoe node " << name << ": " << placement.error().message << "\n";
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 1;
    }
    setup.placement = std::move(*placement);
  }
  const auto model_config = setup.model->config;
  auto coordinator = sys.spawn(actors::coordinator_behavior, std::move(setup));
  auto port = publish(coordinator, me->port, me->host);
  if (!port) {
    log << "eoe node " << name << ": cannot listen on " << me->address() << ": "
        << sys.render(port.error()) << "\n";
    anon_send(coordinator, actors::shutdown_atom::value);
    return 1;
  }
  log << "node " << name << " (head) listening on " << me->address() << ", data plane on "
      << data_plane.plane->address() << over << std::endl;
  std::unique_ptr<http_gateway> gateway;
  if (c.gateway_enabled) {
    auto settings = c.gateway;
    if (const char* token = std::getenv("EOE_ADMIN_TOKEN"))
      settings.admin_token = token;
    try {
      gateway = std::make_unique<http_gateway>(sys, coordinator, model_config, settings);
    } catch (const std::exception& e) {
      log << "eoe node " << name << ": " << e.what() << "\n";
      anon_send(coordinator, actors::shutdown_atom::value);
      return 1;
    }
    log << "HTTP gateway listening on " << settings.host << ":" << gateway->port()
        << (settings.admin_token.empty() ? " (no admin token: membership calls refused)" : "")
        << std::endl;
  }
  if (actors::wait_ready(sys, coordinator, std::chrono::seconds(120)))
    log << "cluster '" << c.name << "' ready: " << c.nodes.size() << " node(s), coordinator at "
        << me->address() << std::endl;
  else
    log << "cluster '" << c.name << "' did not become ready within 120 s" << std::endl;
  sys.await_all_actors_done();
  if (lease)
    lease->mark_stopped();
  return 0;
}

int run_joining_node(const std::string& head, const std::string& name, const std::string& host,
                     std::uint16_t port, std::uint32_t middleman_workers,
                     const trace_settings& trace, const std::string& secret,
                     const tls_settings& tls, std::ostream& log) {
  node_tracing trace_runtime;
  if (!trace_runtime.start(trace, false, tls, log))
    return 1;
  node_data_plane data_plane;
  if (!data_plane.start(host, tls, log))
    return 1;
  Eigen::setNbThreads(1);
  actors::mesh_config cfg;
  cfg.middleman_workers(middleman_workers);
  use_tls(cfg, tls);
  caf::actor_system sys{cfg};
  auto agent = sys.spawn(actors::node_agent_behavior, name);
  auto bound = publish(agent, port, host);
  if (!bound) {
    log << "eoe node " << name << ": cannot listen on " << host << ":" << port << ": "
        << sys.render(bound.error()) << "\n";
    anon_send_exit(agent, caf::exit_reason::user_shutdown);
    return 1;
  }
  const auto address = host + ":" + std::to_string(*bound);
  log << "node " << name << " listening on " << address << ", data plane on "
      << data_plane.plane->address() << (tls.enabled() ? " (TLS)" : "") << std::endl;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto coord = connect(sys, head);
    if (coord) {
      caf::scoped_actor self{sys};
      std::string failure;
      self->request(*coord, std::chrono::seconds(30), actors::join_atom::value, name, address, agent,
                    secret)
        .receive([](actors::ok_atom) {}, [&](const caf::error& err) { failure = actors::describe(err); });
      if (!failure.empty()) {
        log << "eoe node " << name << ": the cluster at " << head << " refused it: " << failure << "\n";
        anon_send_exit(agent, caf::exit_reason::user_shutdown);
        return 1;
      }
      log << "node " << name << " joined the cluster at " << head << std::endl;
      break;
    }
    if (uses_tls(sys) && coord.error().category() == actors::mesh_category) {
      log << "eoe node " << name << ": " << actors::describe(coord.error()) << "\n";
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 1;
    }
    if (std::chrono::steady_clock::now() > until) {
      log << "eoe node " << name << ": no coordinator at " << head << " within 30 s\n";
      anon_send_exit(agent, caf::exit_reason::user_shutdown);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return wait_node_done(sys, agent);
}

} // namespace eoe::net
