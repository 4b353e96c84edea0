#pragma once
// Network namespaces as hosts, for the tests and benchmarks that run as root: a bridge in the
// root namespace and a veth pair into each namespace, addresses 10.77.S.(i + 1)/24, the caller
// at 10.77.S.254 on the bridge; everything removed at the end however the caller ends (the
// destructor; a process killed outright leaves them, named eoe<tag>...). A node runs in its
// namespace with `prefix(i)` before its command line. Packet loss inside one namespace:
// `drop_packets` (nftables: this machine's kernel has no queueing disciplines for tc netem).

#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

namespace eoe::net {

class netns_hosts {
public:
  /// Whether this process can make namespaces (root and iproute2).
  static bool possible() {
    return geteuid() == 0 && run("ip netns list");
  }

  /// `count` namespaces; error() says what failed (then nothing is left behind).
  explicit netns_hosts(int count) {
    const std::string tag = std::to_string(getpid() % 10000);
    subnet_ = "10.77." + std::to_string(static_cast<int>(getpid() % 200)) + ".";
    bridge_ = "eoebr" + tag;
    bool ok = run("ip link add " + bridge_ + " type bridge") && run("ip link set " + bridge_ + " up");
    made_bridge_ = ok;
    for (int i = 0; ok && i < count; ++i) {
      names_.push_back("eoe" + tag + "n" + std::to_string(i + 1));
      hosts_.push_back(subnet_ + std::to_string(i + 1));
      const auto a = "eoe" + tag + "a" + std::to_string(i), b = "eoe" + tag + "b" + std::to_string(i);
      veths_.push_back(a);
      ok = run("ip netns add " + names_[i]) && run("ip link add " + a + " type veth peer name " + b)
           && run("ip link set " + a + " master " + bridge_) && run("ip link set " + a + " up")
           && run("ip link set " + b + " netns " + names_[i])
           && run("ip -n " + names_[i] + " addr add " + hosts_[i] + "/24 dev " + b)
           && run("ip -n " + names_[i] + " link set " + b + " up")
           && run("ip -n " + names_[i] + " link set lo up");
    }
    ok = ok && run("ip addr add " + root_ip() + "/24 dev " + bridge_);
    if (!ok) {
      error_ = "could not create network namespaces and veth pairs here";
      remove();
    }
  }
  ~netns_hosts() {
    remove();
  }
  netns_hosts(const netns_hosts&) = delete;
  netns_hosts& operator=(const netns_hosts&) = delete;

  const std::string& error() const noexcept {
    return error_;
  }
  const std::vector<std::string>& hosts() const noexcept {
    return hosts_;
  }
  const std::vector<std::string>& names() const noexcept {
    return names_;
  }
  /// The caller's own address on the bridge.
  std::string root_ip() const {
    return subnet_ + "254";
  }
  /// What runs a command inside namespace i.
  std::vector<std::string> prefix(size_t i) const {
    return {"ip", "netns", "exec", names_[i]};
  }

  /// Drops `percent` of the packets into and out of namespace i, at random, until heal(i).
  bool drop_packets(size_t i, int percent) const {
    const auto nft = "ip netns exec " + names_[i] + " nft ";
    const auto n = std::to_string(percent);
    return run(nft + "add table inet eoe_chaos")
           && run(nft + "'add chain inet eoe_chaos in { type filter hook input priority 0; }'")
           && run(nft + "'add chain inet eoe_chaos out { type filter hook output priority 0; }'")
           && run(nft + "add rule inet eoe_chaos in numgen random mod 100 '<' " + n + " drop")
           && run(nft + "add rule inet eoe_chaos out numgen random mod 100 '<' " + n + " drop");
  }
  void heal(size_t i) const {
    run("ip netns exec " + names_[i] + " nft delete table inet eoe_chaos");
  }
  /// Whether nftables is there to drop packets.
  static bool can_drop_packets() {
    return run("command -v nft");
  }

private:
  static bool run(const std::string& cmd) {
    return std::system((cmd + " > /dev/null 2>&1").c_str()) == 0;
  }
  void remove() {
    for (auto& n : names_)
      run("ip netns del " + n);
    for (auto& v : veths_) // gone with its namespace, unless that failed first
      run("ip link del " + v);
    names_.clear();
    hosts_.clear();
    veths_.clear();
    if (made_bridge_)
      run("ip link del " + bridge_);
    made_bridge_ = false;
  }

  std::string subnet_, bridge_, error_;
  std::vector<std::string> names_, hosts_, veths_;
  bool made_bridge_ = false;
};

} // namespace eoe::net
