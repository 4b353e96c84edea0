#pragma once
// A client of a running cluster: connects to the coordinator over the network and sends
// requests, status queries and the shutdown.

#include "actors/mesh_config.hpp"
#include "actors/plan.hpp"
#include "net/tls_settings.hpp"

#include <caf/actor_system.hpp>

#include <chrono>
#include <string>

namespace eoe::net {

/// The actor system of a client of a cluster: the mesh's message types, and links over TLS
/// with these credentials when they are given (use_tls). One at a time per process and
/// cluster: CAF 0.17 gives every actor system of a process the same node id, and a head
/// linked twice to one node id loses track of it (and of the nodes it routes for).
struct client_system {
  explicit client_system(const tls_settings& tls = {});

  actors::mesh_config cfg; ///< before sys: the system keeps a reference to it
  caf::actor_system sys;
};

/// host:port -> (host, port); false when it does not parse.
bool split_address(const std::string& address, std::string& host, std::uint16_t& port);

/// The coordinator at address (host:port, or a comma-separated list of the heads of a cluster
/// with standbys, tried in order), or the connection error; over TLS when the system was
/// configured for it (use_tls).
caf::expected<actors::coordinator_actor> connect(caf::actor_system& sys,
                                                 const std::string& address);

/// Sends a request and waits for its answer (or error) up to `timeout`.
caf::expected<actors::infer_result> infer(caf::actor_system& sys,
                                          const actors::coordinator_actor& coordinator,
                                          actors::infer_request req,
                                          std::chrono::milliseconds timeout);

caf::expected<actors::cluster_status> status(caf::actor_system& sys,
                                             const actors::coordinator_actor& coordinator);

} // namespace eoe::net
