#pragma once
// The data plane of a node process over TCP (Boost.Asio): it listens for frames from its peers
// and hands each decoded contribution to the local receiver of the frame's node
// (actors::data_planes::deliver); and it keeps one connection per peer node it sends to,
// writing queued frames in order (TCP_NODELAY; prefix, header and the payloads in one gathered
// write straight from the message that holds them). Every connection has a thread of its own
// that reads or writes with blocking calls, as a plain socket pair does: a cluster has few
// peers, and an event loop's readiness waits cost bulk tensors a third of their rate. On the wire: u32 header length, u16 node
// name length, the name, the contribution's header (actors/contribution_codec), then its
// payloads, which the receiver reads straight into the contribution's strings. A malformed
// frame (a header length past 1 MiB, a header actors/contribution_codec refuses, a
// connection that ends inside a frame, anything a peer's bytes make throw) closes that
// connection with a line on the log naming the peer and what was wrong; nothing else is
// affected. A payload is sized as its bytes arrive past 16 MiB, so a declared length costs
// memory only for what is sent; at most 1024 incoming connections are open at once. With
// TLS credentials, every connection is TLS (Boost.Asio ssl), both ends verify each other's
// certificate against the CA, and a refused handshake is reported on the log; without, the
// sockets carry the frames as they are.

#include "actors/data_plane.hpp"
#include "net/tls_settings.hpp"

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

namespace eoe::net {

class tcp_data_plane : public actors::data_plane {
public:
  /// Listens at host:port (port 0: any free one); throws std::runtime_error when it cannot
  /// (or when the TLS files do not load). Problems (a peer unreachable, a malformed frame, a
  /// refused TLS handshake) are reported on `log`. `tls` off: plaintext.
  tcp_data_plane(const std::string& host, std::uint16_t port, std::ostream& log,
                 const tls_settings& tls = {});
  ~tcp_data_plane() override;

  const std::string& address() const override;
  void send(const std::string& address, const std::string& node,
            std::shared_ptr<const actors::outgoing_frame> frame) override;

  /// Frames received and delivered, and frames dropped (peer unreachable, or undeliverable).
  std::uint64_t delivered() const;
  std::uint64_t dropped() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace eoe::net
