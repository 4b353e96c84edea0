#include "actors/local_cluster.hpp"

#include "actors/node_agent.hpp"

#include <caf/scoped_actor.hpp>

#include <thread>

namespace eoe::actors {

coordinator_actor spawn_local_cluster(caf::actor_system& sys, const std::string& checkpoint,
                                      size_t nodes, const std::string& secret,
                                      std::uint64_t kv_shard_positions,
                                      std::chrono::milliseconds session_idle) {
  coordinator_setup setup;
  setup.secret = secret;
  setup.kv_shard_positions = kv_shard_positions;
  setup.session_idle = session_idle;
  setup.checkpoint = checkpoint;
  setup.model = load_model(checkpoint);
  for (size_t n = 0; n < nodes; ++n) {
    setup.nodes.push_back("n" + std::to_string(n + 1));
    setup.addresses.push_back("in-process");
    setup.agents.push_back(sys.spawn(node_agent_behavior, setup.nodes.back()));
  }
  setup.placement = round_robin_placement(setup.model->config, nodes);
  return sys.spawn(coordinator_behavior, std::move(setup));
}

bool wait_ready(caf::actor_system& sys, const coordinator_actor& coordinator,
                std::chrono::milliseconds timeout) {
  caf::scoped_actor self{sys};
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    bool ready = false;
    self->request(coordinator, std::chrono::seconds(5), status_atom::value)
      .receive([&](const cluster_status& s) { ready = s.epoch > 0; },
               [&](const caf::error&) {});
    if (ready)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

} // namespace eoe::actors
