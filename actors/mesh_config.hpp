#pragma once
// The one CAF configuration of every eoe process: registers every message type of the mesh
// and the "eoe" error category, and loads the middleman (the network layer).

#include <caf/actor_system_config.hpp>

namespace eoe::actors {

class mesh_config : public caf::actor_system_config {
public:
  mesh_config();

  /// Worker threads of the middleman (deserialisation); 0 keeps CAF's default.
  mesh_config& middleman_workers(size_t n);
};

} // namespace eoe::actors
