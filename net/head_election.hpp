#pragma once
// The head of a cluster with standby heads ([cluster] heads, registry = "etcd://..."): each
// candidate campaigns for etcd's leader key under a lease of its own (etcd_client::campaign);
// the winner is the head while it keeps the lease alive, and exits the moment it cannot (a
// head that lost its lease must not serve: its successor may already). The others stand by,
// host no experts, and campaign every 200 ms; when the head's lease ends (killed, stopped,
// cut off: etcd deletes the key at the TTL), one of them wins and takes over. A head that
// shuts the cluster down marks it stopped, and the standbys exit instead of taking over.

#include "net/etcd_client.hpp"
#include "net/etcd_registry.hpp"

#include <atomic>
#include <memory>
#include <ostream>
#include <string>
#include <thread>

namespace eoe::net {

/// The lease's TTL: a dead head's successor takes over this long after the last keepalive.
inline constexpr std::int64_t head_lease_ttl_s = 2;

class head_lease {
public:
  /// Blocks until `name` leads; null when the cluster was shut down meanwhile. Errors of etcd
  /// are logged and retried (it may be starting too).
  static std::unique_ptr<head_lease> win(etcd_client client, etcd_keys keys,
                                         const std::string& name, std::ostream& log);

  ~head_lease();
  head_lease(const head_lease&) = delete;
  head_lease& operator=(const head_lease&) = delete;

  /// The leader key's create_revision: larger for every later head.
  std::uint64_t term() const { return term_; }
  /// The head before this one, as this candidate last saw it ("" = none).
  const std::string& previous() const { return previous_; }
  /// The cluster is shut down: standbys exit rather than take over.
  void mark_stopped();

private:
  head_lease(etcd_client client, etcd_keys keys, std::string name, std::int64_t lease,
             std::ostream& log);
  void keep_alive_loop();

  etcd_client client_;
  etcd_keys keys_;
  std::string name_;
  std::int64_t lease_ = 0;
  std::uint64_t term_ = 0;
  std::string previous_;
  std::ostream& log_;
  std::atomic<bool> stop_{false};
  std::thread keeper_;
};

} // namespace eoe::net
