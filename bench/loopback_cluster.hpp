#pragma once
// A cluster of 3 `eoe node` processes on loopback for the benchmarks: the cluster file written
// to a folder (the [cluster] and any extra tables given, the nodes on consecutive ports from
// `base`), the nodes started beside this benchmark's binary, and stopped at the end.

#include "actors/mesh_errc.hpp"
#include "actors/messages.hpp"
#include "net/client.hpp"
#include "net/process_cluster.hpp"

#include <caf/scoped_actor.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace eoe::bench {

struct loopback_cluster {
  net::cluster_config config;
  std::vector<net::node_process> nodes;

  /// `tables`: TOML text before the [[node]] tables (at least a [cluster] table). Exits the
  /// process with the reason when the cluster does not start.
  loopback_cluster(const std::filesystem::path& dir, int base, const std::string& tables) {
    const auto file = (dir / "cluster.toml").string();
    {
      std::ofstream out{file};
      out << tables;
      for (int n = 0; n < 3; ++n)
        out << "\n[[node]]\nname = \"n" << n + 1 << "\"\nport = " << base + n << "\n";
    }
    auto c = net::load_cluster_config(file);
    if (!c) {
      std::fprintf(stderr, "bench: %s\n", c.error().message.c_str());
      std::exit(1);
    }
    config = std::move(*c);
    const auto exe = (std::filesystem::path{net::self_executable()}.parent_path() / "eoe").string();
    nodes = net::start_nodes(config, file, exe, dir, {}, true); // none outlives a killed bench
    if (auto err = net::wait_cluster_ready(config, nodes, std::chrono::seconds(120)); !err.empty()) {
      std::fprintf(stderr, "bench: %s\n", err.c_str());
      net::stop_nodes(config, nodes, std::chrono::seconds(1));
      std::exit(1);
    }
  }

  /// The head's coordinator, reached from `sys`. Exits the process with the reason when it
  /// cannot be reached (the nodes end with it).
  actors::coordinator_actor head(caf::actor_system& sys) const {
    auto coord = net::connect(sys, config.nodes[0].address());
    if (!coord) {
      std::fprintf(stderr, "bench: %s\n", actors::describe(coord.error()).c_str());
      std::exit(1);
    }
    return *coord;
  }

  /// The batches the head's coordinator has sent to the mesh so far (0 when it does not say).
  static std::uint64_t batches_of(caf::actor_system& sys, const actors::coordinator_actor& coord) {
    caf::scoped_actor self{sys};
    std::uint64_t n = 0;
    self->request(coord, std::chrono::seconds(5), actors::status_atom::value)
      .receive([&](const actors::cluster_status& st) { n = st.batches; }, [](const caf::error&) {});
    return n;
  }

  ~loopback_cluster() {
    net::stop_nodes(config, nodes);
  }

  loopback_cluster(const loopback_cluster&) = delete;
  loopback_cluster& operator=(const loopback_cluster&) = delete;
};

} // namespace eoe::bench
