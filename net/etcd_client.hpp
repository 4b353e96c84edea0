#pragma once
// A small client of etcd's v3 JSON gateway (plain HTTP/1.1, Boost.Beast): what the cluster
// needs of a consensus store to hold its registry and elect its head. Keys and values are
// bytes (base64 on the wire); every call has a deadline and returns an error naming the
// endpoint and what went wrong instead of throwing. Blocking: call it from a thread of its
// own, never from an actor's handler.
//
// The election: a candidate grants itself a lease (a TTL it keeps alive) and puts the leader
// key under that lease in a transaction that succeeds only when the key does not exist
// (create_revision == 0). The winner's create_revision is its term: a later leader's is
// larger, so nodes can refuse orders of an older head (fencing). When the winner stops
// keeping the lease alive, etcd deletes the key at the TTL and the next candidate wins.

#include "experts/base/error.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace eoe::net {

struct etcd_value {
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

/// The leader key as a campaign found it: won (this candidate holds it) or someone else's.
struct etcd_campaign {
  bool won = false;
  etcd_value leader; ///< the key as it is now (ours when won)
};

class etcd_client {
public:
  /// endpoint: "etcd://HOST:PORT" or "HOST:PORT".
  static experts::expected<etcd_client> parse(const std::string& endpoint,
                                              std::chrono::milliseconds timeout =
                                                std::chrono::seconds(2));

  const std::string& endpoint() const { return host_port_; }

  experts::expected<std::optional<etcd_value>> get(const std::string& key) const;
  /// Every key that starts with prefix, in key order.
  experts::expected<std::vector<std::pair<std::string, etcd_value>>>
  get_prefix(const std::string& prefix) const;
  experts::expected<void> put(const std::string& key, const std::string& value,
                              std::int64_t lease = 0) const;
  /// Puts key only while `guard` holds `guard_value` (the leader writing under its
  /// leadership); false when it does not.
  experts::expected<bool> put_if(const std::string& guard, const std::string& guard_value,
                                 const std::string& key, const std::string& value) const;
  experts::expected<void> erase_prefix(const std::string& prefix) const;

  /// A lease of ttl seconds; its id.
  experts::expected<std::int64_t> grant(std::int64_t ttl_s) const;
  /// Keeps a lease alive; the TTL left (0 or less: the lease is gone).
  experts::expected<std::int64_t> keep_alive(std::int64_t lease) const;
  experts::expected<void> revoke(std::int64_t lease) const;

  /// Puts key = value under lease when key does not exist; else reads who holds it.
  experts::expected<etcd_campaign> campaign(const std::string& key, const std::string& value,
                                            std::int64_t lease) const;

private:
  etcd_client(std::string host, std::string port, std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(std::move(port)), host_port_(host_ + ":" + port_),
      timeout_(timeout) {}

  /// POSTs body to the gateway's path; the parsed reply's text, or an error.
  experts::expected<std::string> call(const std::string& path, const std::string& body) const;

  std::string host_, port_, host_port_;
  std::chrono::milliseconds timeout_;
};

} // namespace eoe::net
