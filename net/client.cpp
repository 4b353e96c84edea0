#include "net/client.hpp"

#include "actors/mesh_errc.hpp"
#include "net/cluster_link.hpp"

#include <caf/scoped_actor.hpp>

#include <algorithm>
#include <vector>

namespace eoe::net {

namespace {

actors::mesh_config& prepared(actors::mesh_config& cfg, const tls_settings& tls) {
  use_tls(cfg, tls);
  return cfg;
}

} // namespace

client_system::client_system(const tls_settings& tls) : sys(prepared(cfg, tls)) {
  // nop
}

bool split_address(const std::string& address, std::string& host, std::uint16_t& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    return false;
  try {
    size_t used = 0;
    const auto p = std::stoul(address.substr(colon + 1), &used);
    if (used != address.size() - colon - 1 || p == 0 || p > 65535)
      return false;
    port = static_cast<std::uint16_t>(p);
  } catch (const std::exception&) {
    return false;
  }
  host = address.substr(0, colon);
  return true;
}

caf::expected<actors::coordinator_actor> connect(caf::actor_system& sys,
                                                 const std::string& address) {
  // "h1:p1,h2:p2": the heads of a cluster with standbys, tried in order; the first that
  // answers is the head (a standby listens only once it leads).
  std::vector<std::string> addresses;
  for (size_t at = 0; at <= address.size();) {
    const auto comma = std::min(address.find(',', at), address.size());
    addresses.push_back(address.substr(at, comma - at));
    at = comma + 1;
  }
  std::string failures;
  for (auto& a : addresses) {
    std::string host;
    std::uint16_t port = 0;
    if (!split_address(a, host, port))
      return actors::make_mesh_error(actors::mesh_errc::bad_request, "'" + a + "' is not HOST:PORT");
    // A stopped head's port still takes the connection but never answers: with standbys,
    // give each head 1.5 s rather than the 10 s a single address gets.
    auto coord = remote_actor<actors::coordinator_actor>(
      sys, host, port,
      addresses.size() > 1 ? std::chrono::milliseconds(1500) : std::chrono::milliseconds(10'000));
    if (addresses.size() == 1)
      return coord;
    if (coord) {
      // An address this process reached before answers from CAF's cache of connections, even
      // when the head there is stopped: it counts only if it answers.
      caf::scoped_actor self{sys};
      caf::error silent;
      self->request(*coord, std::chrono::milliseconds(1500), actors::status_atom::value)
        .receive([](const actors::cluster_status&) {}, [&](caf::error& e) { silent = std::move(e); });
      if (!silent)
        return coord;
      failures += (failures.empty() ? "" : "; ") + a + ": " + actors::describe(silent);
      continue;
    }
    failures += (failures.empty() ? "" : "; ") + a + ": " + actors::describe(coord.error());
  }
  return actors::make_mesh_error(actors::mesh_errc::link_failed, "no head answered: " + failures);
}

caf::expected<actors::infer_result> infer(caf::actor_system& sys,
                                          const actors::coordinator_actor& coordinator,
                                          actors::infer_request req,
                                          std::chrono::milliseconds timeout) {
  caf::scoped_actor self{sys};
  caf::expected<actors::infer_result> out{caf::error{}};
  self->request(coordinator, timeout, actors::infer_atom::value, std::move(req))
    .receive([&](actors::infer_result& r) { out = std::move(r); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

caf::expected<actors::cluster_status> status(caf::actor_system& sys,
                                             const actors::coordinator_actor& coordinator) {
  caf::scoped_actor self{sys};
  caf::expected<actors::cluster_status> out{caf::error{}};
  self->request(coordinator, std::chrono::seconds(10), actors::status_atom::value)
    .receive([&](actors::cluster_status& s) { out = std::move(s); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

} // namespace eoe::net
