#pragma once
// The live trace stream of a cluster: the head listens at [trace] collector; every node's
// sink connects and says "publish", then sends its event lines; `eoe-trace follow` connects
// and says "follow", then receives every line any node sends from then on. One Boost.Asio
// thread; a follower that falls 64 MiB behind is disconnected rather than buffered without
// bound. With TLS credentials every connection is TLS and must present a certificate of the
// cluster's CA (publishers and followers alike); a connection that does not is closed.

#include "net/tls_settings.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace eoe::net {

class trace_collector {
public:
  /// Listens at host:port (port 0: any free one); throws std::runtime_error when it cannot
  /// (or when the TLS files do not load). `tls` off: plaintext.
  trace_collector(const std::string& host, std::uint16_t port, const tls_settings& tls = {});
  ~trace_collector();

  trace_collector(const trace_collector&) = delete;
  trace_collector& operator=(const trace_collector&) = delete;

  std::uint16_t port() const;
  /// Event lines received from publishers so far.
  std::uint64_t lines() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace eoe::net
