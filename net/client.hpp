#pragma once
// A client of a running cluster: connects to the coordinator over the network and sends
// requests, status queries and the shutdown.

#include "actors/plan.hpp"

#include <caf/actor_system.hpp>

#include <chrono>
#include <string>

namespace eoe::net {

/// host:port -> (host, port); false when it does not parse.
bool split_address(const std::string& address, std::string& host, std::uint16_t& port);

/// The coordinator at address (host:port), or the connection error as text.
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
