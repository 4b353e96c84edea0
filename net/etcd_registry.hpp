#pragma once
// The registry in etcd ([cluster] registry = "etcd://HOST:PORT"), shared by the heads of a
// cluster: the record (actors/registry_file.hpp's JSON) at /eoe/<cluster>/registry, an
// epoch's model in chunks of 512 KiB at /eoe/<cluster>/model/<epoch>/<index> (etcd takes
// requests of 1.5 MiB at most), written before the record that names it; the record is put
// only while this head holds the leader key (a transaction guarded by its value), so a head
// that lost its lease cannot overwrite its successor's epochs.

#include "actors/registry_file.hpp"
#include "net/etcd_client.hpp"

#include <memory>
#include <string>

namespace eoe::net {

/// The keys of a cluster's registry and election in etcd.
struct etcd_keys {
  std::string prefix; ///< "/eoe/<cluster>/"
  std::string leader() const { return prefix + "leader"; }
  std::string registry() const { return prefix + "registry"; }
  std::string model(std::uint64_t epoch) const {
    return prefix + "model/" + std::to_string(epoch) + "/";
  }
};

etcd_keys keys_of_cluster(const std::string& cluster);

/// The store of a head named `head` (the leader key's value while it leads).
std::shared_ptr<actors::registry_store> etcd_registry(etcd_client client, etcd_keys keys,
                                                      std::string head);

} // namespace eoe::net
