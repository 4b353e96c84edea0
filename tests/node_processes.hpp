#pragma once
// The multi-process tests' shared pieces: where the eoe binary is and how to run it, ports of
// their own per test process, and `eoe node` processes of a cluster file that are ready before a test goes on and
// gone when it ends, whatever happens.

#include "net/process_cluster.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <utility>
#include <vector>

namespace eoe::test {

/// The eoe binary of this build (CTest sets EOE_BIN_DIR).
inline std::string eoe_binary() {
  const char* dir = std::getenv("EOE_BIN_DIR");
  return (std::filesystem::path{dir ? dir : "build/bin"} / "eoe").string();
}

/// Runs the eoe binary (for at most 60 s) and returns its exit code and output (stdout and
/// stderr; `redirect` "2>/dev/null": stdout alone).
inline std::pair<int, std::string> run_eoe(const std::string& args, const std::string& env = "",
                                           const std::string& redirect = "2>&1") {
  const auto cmd = env + " timeout 60 " + eoe_binary() + " " + args + " " + redirect;
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf;
  while (auto n = std::fread(buf.data(), 1, buf.size(), p))
    out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// The first of ten ports of this test process's own, in 10000..19999: below 20000, as the
/// project's tests keep to, and far below Linux's ephemeral range (32768 and up by default),
/// where an outgoing connection of any process could hold one.
inline int base_port() {
  return 10000 + static_cast<int>(getpid() % 999) * 10;
}

/// The node processes of a cluster file, ready (or the test fails with the log of the node
/// that died). prefix: a command prefix per node (e.g. `ip netns exec`).
struct node_processes {
  net::cluster_config config;
  std::vector<net::node_process> nodes;
  std::string file;                           ///< the cluster file
  std::filesystem::path dir;                  ///< where the logs are
  std::vector<std::vector<std::string>> prefix;

  node_processes(const std::string& file, const std::filesystem::path& dir,
                 const std::vector<std::vector<std::string>>& prefix = {})
      : file(file), dir(dir), prefix(prefix) {
    auto c = net::load_cluster_config(file);
    REQUIRE(c.has_value());
    config = std::move(*c);
    nodes = net::start_nodes(config, file, eoe_binary(), dir, prefix, true);
    const auto err = net::wait_cluster_ready(config, nodes, std::chrono::seconds(60));
    if (!err.empty()) {
      net::stop_nodes(config, nodes, std::chrono::seconds(1));
      FAIL(err);
    }
  }

  /// Starts node i again as its unit would (`eoe node --cluster FILE --name N`, under its
  /// prefix), once its old process has ended; its log is N.again.log.
  void restart(size_t i) {
    if (nodes[i].pid > 0)
      ::waitpid(nodes[i].pid, nullptr, 0);
    std::vector<std::string> argv = i < prefix.size() ? prefix[i] : std::vector<std::string>{};
    for (std::string a : {eoe_binary(), std::string{"node"}, std::string{"--cluster"}, file,
                          std::string{"--name"}, nodes[i].node})
      argv.push_back(std::move(a));
    nodes[i] = net::start_process(nodes[i].node, argv, dir / (nodes[i].node + ".again.log"), true);
  }

  /// Shuts the cluster down; how many processes had to be killed.
  size_t stop() {
    return net::stop_nodes(config, nodes);
  }

  ~node_processes() {
    // A failed REQUIRE or FAIL unwinds through here: the nodes' logs say what they saw.
    if (std::uncaught_exceptions() > 0)
      for (const auto& n : nodes)
        std::fprintf(stderr, "log of node %s:\n%s\n", n.node.c_str(),
                     net::log_tail(n.log, 40).c_str());
    // A failed check left it running: no process outlives the test.
    if (std::any_of(nodes.begin(), nodes.end(), [](auto& n) { return n.pid > 0; }))
      net::stop_nodes(config, nodes, std::chrono::seconds(1));
  }
};

} // namespace eoe::test
