#pragma once
// A cluster of local processes: one `eoe node` per node of a cluster file, started in its own
// session with its output in a log file; what `eoe up` / `eoe down`, the multi-process tests
// and bench/mesh use.

#include "net/cluster_config.hpp"

#include <chrono>
#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace eoe::net {

struct node_process {
  std::string node;
  pid_t pid = 0;
  std::filesystem::path log;
};

/// Starts argv (argv[0] looked up in PATH) in its own session, stdout and stderr to `log`.
/// `die_with_parent`: as below.
node_process start_process(const std::string& name, std::vector<std::string> argv,
                           const std::filesystem::path& log, bool die_with_parent);

/// Starts `exe node --cluster cluster_file --name N` for every node of c, logs in log_dir.
/// `prefix` runs before exe (for example "ip netns exec ns1" per node; empty: none).
/// `die_with_parent`: the nodes get SIGTERM when the calling thread's process ends, however it
/// ends (a test or benchmark killed by a timeout leaves no node behind); `eoe up` leaves it off.
std::vector<node_process> start_nodes(const cluster_config& c, const std::string& cluster_file,
                                       const std::string& exe,
                                       const std::filesystem::path& log_dir,
                                       const std::vector<std::vector<std::string>>& prefix = {},
                                       bool die_with_parent = false);

/// Waits until the head reports a ready cluster. Fails (with the dead node's log) when a node
/// process exits first, or after the timeout (with the head's log, then the others'); returns the error text,
/// empty when ready.
std::string wait_cluster_ready(const cluster_config& c, std::vector<node_process>& nodes,
                               std::chrono::seconds timeout);

/// Asks the head to shut the cluster down, waits up to `grace` for the processes to exit,
/// then kills what is left. Returns how many had to be killed.
size_t stop_nodes(const cluster_config& c, std::vector<node_process>& nodes,
                  std::chrono::seconds grace = std::chrono::seconds(10));

/// The last `lines` lines of a log, indented.
std::string log_tail(const std::filesystem::path& log, size_t lines = 15);

/// The path of the running executable (/proc/self/exe).
std::string self_executable();

} // namespace eoe::net
