#pragma once
// A whole mesh in this test process (actors/local_cluster), started ready and shut down at the
// end of the test, with the coordinator calls the tests make.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "ask.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include <catch2/catch.hpp>

namespace eoe::test {

struct local_cluster {
  actors::mesh_config cfg;
  caf::actor_system sys;
  actors::coordinator_actor coordinator;

  /// checkpoint "": the embedded default model; a language model's contexts open a shard
  /// every kv_shard_positions positions, and its sessions close after session_idle unfed.
  local_cluster(const std::string& checkpoint, size_t nodes,
                std::uint64_t kv_shard_positions = 4096,
                std::chrono::milliseconds session_idle = std::chrono::minutes(10))
    : sys(cfg) {
    coordinator = actors::spawn_local_cluster(sys, checkpoint, nodes, "", kv_shard_positions,
                                              session_idle);
    REQUIRE(actors::wait_ready(sys, coordinator, std::chrono::seconds(20)));
  }

  ~local_cluster() {
    caf::anon_send(coordinator, actors::shutdown_atom::value);
  }

  /// A membership change; returns the epoch it made.
  template <class... Ts>
  std::uint64_t change(Ts... xs) {
    return ask<std::uint64_t>(sys, coordinator, std::chrono::seconds(30), xs...);
  }

  actors::cluster_status status() {
    return ask<actors::cluster_status>(sys, coordinator, std::chrono::seconds(10),
                                       actors::status_atom::value);
  }

  actors::context_actor contexts() {
    return ask<actors::context_actor>(sys, coordinator, std::chrono::seconds(5),
                                      actors::context_atom::value);
  }
};

} // namespace eoe::test
