#pragma once
// The live trace stream of a cluster: the head listens at [trace] collector; every node's
// sink connects and says "publish", then sends its event lines; `eoe-trace follow` connects
// and says "follow", then receives every line any node sends from then on. One Boost.Asio
// thread; a follower that falls 64 MiB behind is disconnected rather than buffered without
// bound. With TLS credentials every connection is TLS and must present a certificate of the
// cluster's CA (publishers and followers alike); a connection that does not is closed.
// Whatever a peer sends costs at most its own connection, named on the log: a line that is
// not one JSON object in well-formed UTF-8 is dropped (followers get only trace lines); a
// line without a newline in 1 MiB (the line limit) closes its connection.

#include "net/tls_settings.hpp"

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

namespace eoe::net {

class trace_collector {
public:
  /// Listens at host:port (port 0: any free one); throws std::runtime_error when it cannot
  /// (or when the TLS files do not load). `tls` off: plaintext. What peers get wrong is
  /// written to `log`, from the collector's thread (read it once the collector is gone).
  trace_collector(const std::string& host, std::uint16_t port, const tls_settings& tls = {},
                  std::ostream& log = std::cerr);
  ~trace_collector();

  trace_collector(const trace_collector&) = delete;
  trace_collector& operator=(const trace_collector&) = delete;

  std::uint16_t port() const;
  /// Event lines received from publishers and passed on so far.
  std::uint64_t lines() const;
  /// Lines dropped so far: not trace lines, past the line limit, or cut off by the end of
  /// their connection.
  std::uint64_t rejected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace eoe::net
