#include "net/cluster_link.hpp"

#include "actors/mesh_errc.hpp"
#include "net/openssl_error_queue.hpp"
#include "net/tls_context.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include <stdexcept>

namespace eoe::net {

void use_tls(actors::mesh_config& cfg, const tls_settings& tls) {
  if (!tls.enabled())
    return;
  if (!tls_calls_start_clean()) // see openssl_error_queue.hpp: CAF's TLS links would break
    throw std::logic_error("eoe: CAF's TLS calls do not reach eoe's SSL_read");
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = tls.certificate;
  cfg.openssl_key = tls.key;
  cfg.openssl_cafile = tls.ca;
  cfg.openssl_passphrase = tls.passphrase;
  cfg.set("middleman.enable-automatic-connections", false);
}

bool uses_tls(caf::actor_system& sys) {
  return sys.has_openssl_manager();
}

tls_settings tls_of(caf::actor_system& sys) {
  if (!uses_tls(sys))
    return {};
  const auto& cfg = sys.config();
  return {cfg.openssl_certificate, cfg.openssl_key, cfg.openssl_cafile, cfg.openssl_passphrase};
}

caf::io::middleman_actor connector_of(caf::actor_system& sys) {
  return uses_tls(sys) ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
}

caf::expected<caf::strong_actor_ptr> remote_actor(caf::actor_system& sys,
                                                  const std::set<std::string>& ifs,
                                                  const std::string& host, std::uint16_t port,
                                                  std::chrono::milliseconds timeout) {
  const bool tls = uses_tls(sys);
  const auto where = host + ":" + std::to_string(port);
  // What caf::io::middleman::remote_actor does, with a deadline: a peer that accepts the TCP
  // connection and then says nothing must not hold a client forever.
  auto mm = connector_of(sys);
  caf::expected<caf::strong_actor_ptr> out{caf::error{}};
  {
    caf::scoped_actor self{sys};
    self->request(mm, timeout, caf::connect_atom::value, host, port)
      .receive(
        [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>& got) {
          if (!ptr)
            out = caf::make_error(caf::sec::no_actor_published_at_port, port);
          else if (!sys.assignable(got, ifs))
            out = caf::make_error(caf::sec::unexpected_actor_messaging_interface, ifs,
                                  std::move(got));
          else
            out = std::move(ptr);
        },
        [&](caf::error& err) { out = std::move(err); });
  }
  if (out)
    return out;
  const auto& err = out.error();
  if (err == caf::sec::request_timeout)
    return actors::make_mesh_error(
      actors::mesh_errc::link_failed,
      "no answer from " + where + " within "
        + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count())
        + " s");
  if (err != caf::sec::disconnect_during_handshake && err != caf::sec::cannot_connect_to_node)
    return out;
  const auto reason = caf::to_string(err);
  if (!tls) {
    if (err == caf::sec::cannot_connect_to_node)
      return out; // nobody listens: CAF's error says it
    return actors::make_mesh_error(actors::mesh_errc::link_failed,
                                   "link to " + where + " failed (" + reason
                                     + "): a cluster with [tls] refuses links without TLS");
  }
  const auto why = diagnose_tls(host, port, tls_of(sys));
  if (why.empty())
    return out;
  return actors::make_mesh_error(actors::mesh_errc::link_failed,
                                 "TLS link to " + where + " failed (" + reason + "): " + why);
}

} // namespace eoe::net
