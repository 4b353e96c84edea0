#pragma once
// A local etcd server for the tests and benchmarks of standby heads: started on two ports of
// the caller's (client and peer), its data in a folder removed at the end, killed at the end
// however the caller ends. They skip (or refuse) when Debian's etcd-server is not installed.

#include "net/etcd_client.hpp"
#include "net/process_cluster.hpp"

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <thread>

namespace eoe::net {

inline bool etcd_installed() {
  return std::system("command -v etcd > /dev/null 2>&1") == 0;
}

struct local_etcd {
  std::filesystem::path dir;
  int port = 0;
  std::string host = "127.0.0.1";
  node_process proc;

  /// Starts etcd in dir (created) on host:port (clients) and port + 1 (peers); waits until it
  /// answers. proc.pid is 0 when it did not start.
  local_etcd(std::filesystem::path d, int client_port, std::string at = "127.0.0.1")
    : dir(std::move(d)), port(client_port), host(std::move(at)) {
    std::filesystem::create_directories(dir);
    const auto url = [this](int p) { return "http://" + host + ":" + std::to_string(p); };
    proc = start_process("etcd",
                              {"etcd", "--name", "eoe-test", "--data-dir", (dir / "data").string(),
                               "--listen-client-urls", url(port), "--advertise-client-urls",
                               url(port), "--listen-peer-urls", url(port + 1),
                               "--initial-advertise-peer-urls", url(port + 1),
                               "--initial-cluster", "eoe-test=" + url(port + 1)},
                              dir / "etcd.log", true);
    auto c = client();
    for (int i = 0; i < 200; ++i) {
      if (c.get("/probe"))
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    stop();
  }

  etcd_client client() const {
    return *etcd_client::parse(host + ":" + std::to_string(port));
  }

  std::string endpoint() const {
    return "etcd://" + host + ":" + std::to_string(port);
  }

  void stop() {
    if (proc.pid > 0) {
      ::kill(proc.pid, SIGKILL);
      ::waitpid(proc.pid, nullptr, 0);
      proc.pid = 0;
    }
  }

  ~local_etcd() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

} // namespace eoe::net
