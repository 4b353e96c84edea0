#pragma once
// The CAF links between the processes of a cluster: BASP through CAF's middleman, or, when the
// cluster has [tls], through CAF's openssl module (TLS; each side verifies the other's
// certificate against the cluster's CA). Every publish and remote_actor of eoe goes through
// here, so a process configured for TLS has no plaintext CAF link.

#include "actors/mesh_config.hpp"
#include "net/tls_settings.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>

namespace eoe::net {

/// Prepares cfg for the cluster's links; nothing when tls is off. With TLS: loads CAF's openssl
/// module with the credentials (check them first: check_tls) and turns CAF's automatic
/// connections off, because CAF 0.17 dials those in plain TCP, past the openssl module. Then
/// CAF messages between two nodes that did not dial each other (the head dials every node)
/// pass through the head; contributions, the bulk, take the data plane's direct links.
/// (Nodes dialling each other over TLS at start-up made CAF 0.17 drop the head's links now and
/// then: its node-lost monitors fired within a second on ~1 start in 6 here.)
void use_tls(actors::mesh_config& cfg, const tls_settings& tls);

/// Whether the system's links run over TLS.
bool uses_tls(caf::actor_system& sys);

/// The credentials the system's links use (empty without TLS).
tls_settings tls_of(caf::actor_system& sys);

/// Publishes `whom` at host:port (port 0: any free one, reusing the address); the bound port.
template <class Handle>
caf::expected<std::uint16_t> publish(const Handle& whom, std::uint16_t port,
                                     const std::string& host) {
  auto& sys = whom.home_system();
  if (uses_tls(sys))
    return caf::openssl::publish(whom, port, host.c_str(), true);
  return sys.middleman().publish(whom, port, host.c_str(), true);
}

/// The actor published at host:port, or an error within `timeout`. A failed TLS link says
/// why (see diagnose_tls): "link_failed: TLS link to 127.0.0.1:4401 failed
/// (disconnect_during_handshake): 127.0.0.1:4401 refused this process's certificate ...".
caf::expected<caf::strong_actor_ptr> remote_actor(caf::actor_system& sys,
                                                  const std::set<std::string>& ifs,
                                                  const std::string& host, std::uint16_t port,
                                                  std::chrono::milliseconds timeout);

/// The middleman actor that makes this system's links (its openssl module's with TLS).
caf::io::middleman_actor connector_of(caf::actor_system& sys);

template <class Handle>
caf::expected<Handle> remote_actor(caf::actor_system& sys, const std::string& host,
                                   std::uint16_t port,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto x = remote_actor(sys, sys.message_types<Handle>(), host, port, timeout);
  if (!x)
    return std::move(x.error());
  return caf::actor_cast<Handle>(std::move(*x));
}

} // namespace eoe::net
