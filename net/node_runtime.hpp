#pragma once
// One node process of a cluster: its actor system, its node agent and, on the head, the
// coordinator; published through the CAF middleman at the node's port.

#include "net/cluster_config.hpp"
#include "experts/base/model_config.hpp"

#include <iosfwd>
#include <string>
#include <vector>

namespace eoe::net {

/// [config layer][expert] -> index into `members` (the nodes that host experts: all but the
/// standby heads): the cluster's explicit placement checked against the model, or
/// round-robin when it has none.
experts::expected<std::vector<std::vector<std::uint32_t>>>
resolve_placement(const cluster_config& c, const std::vector<std::string>& members,
                  const experts::model_config& m);

/// Runs node `name` of cluster `c` until the cluster is shut down. Prints where it listens,
/// and on the head "ready" once every node has its experts. Returns the process exit code.
int run_node(const cluster_config& c, const std::string& name, std::ostream& log);

} // namespace eoe::net

namespace eoe::net {

/// Runs a node that joins a running cluster: listens at host:port, then registers with the
/// coordinator at `head` (host:port). It hosts no expert until one is added to it.
/// `secret`: the cluster's, presented when joining. `trace`: where its trace events go (the
/// cluster file's [trace] dir and collector; sampling is the head's). `tls`: the node's
/// credentials when the cluster has [tls] (checked before: check_tls).
int run_joining_node(const std::string& head, const std::string& name, const std::string& host,
                     std::uint16_t port, std::uint32_t middleman_workers,
                     const trace_settings& trace, const std::string& secret,
                     const tls_settings& tls, std::ostream& log);

} // namespace eoe::net
