#pragma once
// The one CAF configuration of every eoe process: registers every message type of the mesh
// and the "eoe" error category, and loads the middleman (the network layer).

#include "actors/scheduler_policy.hpp"

#include <caf/actor_system_config.hpp>

namespace eoe::actors {

class mesh_config : public caf::actor_system_config {
public:
  /// Every message type, the error category, the middleman; scheduler_policy::sharing.
  mesh_config();

  mesh_config& scheduler(scheduler_policy p);

  /// Worker threads of the middleman (deserialisation); 0 keeps CAF's default.
  mesh_config& middleman_workers(size_t n);

  /// Worker threads of the scheduler; 0: the machine's hardware threads (at least 2), which
  /// is the default. CAF's own (at least 4) put 12 workers of 3 nodes on a 2-core machine
  /// (bench/RESULTS.md: 2 per node gave the gateway 7% more on the means, within the drift).
  mesh_config& worker_threads(size_t n);
};

} // namespace eoe::actors
