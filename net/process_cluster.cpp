#include "net/process_cluster.hpp"

#include "actors/mesh_config.hpp"
#include "net/client.hpp"

#include <caf/send.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace eoe::net {

namespace fs = std::filesystem;

std::string self_executable() {
  return fs::read_symlink("/proc/self/exe").string();
}

std::string log_tail(const fs::path& log, size_t lines) {
  std::ifstream in{log};
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);)
    all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "    " + all[i] + "\n";
  return out;
}

node_process start_process(const std::string& name, std::vector<std::string> argv,
                           const fs::path& log, bool die_with_parent) {
  const pid_t parent = getpid();
  std::fflush(nullptr); // a child's freopen would write what this process buffered
  node_process p{name, 0, log};
  p.pid = fork();
  if (p.pid < 0)
    throw std::runtime_error("fork failed for node " + name);
  if (p.pid == 0) {
    setsid();
    // The signal survives exec; a parent gone before prctl took effect is caught here.
    if (die_with_parent && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent))
      std::_Exit(125);
    if (!std::freopen(p.log.c_str(), "w", stdout))
      std::_Exit(126);
    dup2(fileno(stdout), fileno(stderr));
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::perror("exec");
    std::_Exit(127);
  }
  return p;
}

std::vector<node_process> start_nodes(const cluster_config& c, const std::string& cluster_file,
                                      const std::string& exe, const fs::path& log_dir,
                                      const std::vector<std::vector<std::string>>& prefix,
                                      bool die_with_parent) {
  fs::create_directories(log_dir);
  std::vector<node_process> out;
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const auto& n = c.nodes[i];
    if (n.unit)
      continue; // its own unit starts it there; the head waits for it like the others
    std::vector<std::string> argv;
    if (i < prefix.size())
      argv = prefix[i];
    if (!n.ssh.empty()) {
      // Over ssh: the cluster file copied to ~/.eoe/cluster-<node>.toml there, then the node
      // run in the ssh session (its output comes back into the local log; `eoe down` ends it
      // through the head).
      const auto remote_file = ".eoe/cluster-" + n.name + ".toml";
      std::string quoted = "'";
      for (char ch : cluster_file)
        quoted += ch == '\'' ? std::string{"'\\''"} : std::string(1, ch);
      quoted += "'";
      const auto copy = c.ssh_command + " " + n.ssh + " 'mkdir -p .eoe && cat > " + remote_file
                        + "' < " + quoted;
      if (const int rc = std::system(copy.c_str()); rc != 0)
        throw std::runtime_error("node " + n.name + ": copying the cluster file to " + n.ssh
                                 + " over ssh failed (`" + copy + "` exited "
                                 + std::to_string(WEXITSTATUS(rc)) + ")");
      std::istringstream words{c.ssh_command};
      for (std::string w; words >> w;)
        argv.push_back(w);
      for (auto s : {std::string{"-n"}, n.ssh, std::string{"exec"}, c.remote_eoe,
                     std::string{"node"}, std::string{"--cluster"}, remote_file,
                     std::string{"--name"}, n.name})
        argv.push_back(s);
    } else {
      for (auto s : {exe, std::string{"node"}, std::string{"--cluster"}, cluster_file,
                     std::string{"--name"}, n.name})
        argv.push_back(s);
    }
    out.push_back(start_process(n.name, std::move(argv), log_dir / (n.name + ".log"),
                                die_with_parent));
  }
  return out;
}

std::string wait_cluster_ready(const cluster_config& c, std::vector<node_process>& nodes,
                               std::chrono::seconds timeout) {
  client_system client{c.tls};
  auto& sys = client.sys;
  const auto head = c.head_addresses();
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    for (auto& p : nodes) {
      int status = 0;
      if (p.pid > 0 && waitpid(p.pid, &status, WNOHANG) == p.pid) {
        p.pid = 0;
        return "node " + p.node + " exited while the cluster started; its log ("
               + p.log.string() + "):\n" + log_tail(p.log);
      }
    }
    if (auto coord = connect(sys, head)) {
      auto s = status(sys, *coord);
      if (s && s->epoch > 0)
        return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string out = "cluster '" + c.name + "' was not ready within "
                    + std::to_string(timeout.count()) + " s";
  // The head's log first: it says which nodes it saw and lost; then each node's own account.
  const auto& head_name = c.nodes[c.head_index()].name;
  auto add_log = [&out](const node_process& p, const std::string& whose) {
    const auto tail = log_tail(p.log);
    out += "; " + whose + " log (" + p.log.string() + ")"
           + (tail.empty() ? std::string{" is empty"} : ":\n" + tail);
  };
  for (const auto& p : nodes)
    if (p.node == head_name)
      add_log(p, "the head's");
  for (const auto& p : nodes)
    if (p.node != head_name)
      add_log(p, p.node + "'s");
  return out;
}

size_t stop_nodes(const cluster_config& c, std::vector<node_process>& nodes,
                  std::chrono::seconds grace) {
  {
    client_system client{c.tls};
    auto& sys = client.sys;
    if (auto coord = connect(sys, c.head_addresses())) {
      caf::anon_send(*coord, actors::shutdown_atom::value);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  auto reap = [&] {
    bool any = false;
    for (auto& p : nodes) {
      if (p.pid <= 0)
        continue;
      int status = 0;
      const auto r = waitpid(p.pid, &status, WNOHANG);
      if (r == p.pid || (r < 0 && kill(p.pid, 0) != 0))
        p.pid = 0; // exited (ours), or not a child of ours and gone
      else
        any = true;
    }
    return any;
  };
  const auto until = std::chrono::steady_clock::now() + grace;
  while (reap() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  size_t killed = 0;
  for (auto& p : nodes)
    if (p.pid > 0) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, nullptr, 0);
      p.pid = 0;
      ++killed;
    }
  return killed;
}

} // namespace eoe::net
