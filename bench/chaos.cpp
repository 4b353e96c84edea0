// bench_chaos: a chaos soak. While checked requests flow (every answer compared with the
// reference forward of the epoch that served it), it kills (-9) or stops (-STOP, resumed
// once the cluster declared it lost: fenced, it exits) a random node other than the head
// every ~`every` seconds, then joins a fresh process under the node's name and gives it back
// as many experts as it had (clones of live members of the same layers), or, with --readd
// unit, starts it again as its unit would and waits for the head to take it back with its
// own experts. It reports requests
// ok / failed with an error / wrong / lost, and per fault the time until the head declared
// the node lost, until a request was served again, until the node rejoined and until its
// experts were back. With --standby (etcd started here, head candidates n1 and s1 hosting no
// experts) about one fault in --nodes is the head's: it is killed or stopped, the time until
// a standby serves is measured, and the old head is started again as a standby. With --netns
// every node runs in its own network namespace (net/netns_hosts.hpp), and --loss-share of the
// faults drop --loss-percent of a node's packets for --loss-seconds (nftables in its
// namespace: this machine's kernel has no sch_netem for tc netem, so packets are dropped, not
// delayed); a node declared lost meanwhile is fenced, exits and rejoins as after a stop.
// Bounded in time and count; loopback or namespaces only.

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "actors/wire.hpp"
#include "bench/machine.hpp"
#include "net/client.hpp"
#include "net/load_generator.hpp"
#include "net/local_etcd.hpp"
#include "net/netns_hosts.hpp"
#include "net/etcd_registry.hpp"
#include "net/process_cluster.hpp"

#include <CLI/CLI.hpp>

#include <caf/scoped_actor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace eoe;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

struct fault {
  std::string kind, node;
  double detect_ms = -1, served_ms = -1, rejoin_ms = -1, restore_ms = -1;
  size_t experts = 0;
  std::string epochs; ///< the epochs its experts came back in
  std::string problem; ///< what did not happen ("" = all did)
};

/// Sends one small request; whether it was answered.
bool probe(caf::actor_system& sys, const actors::coordinator_actor& coord, int width) {
  caf::scoped_actor self{sys};
  actors::infer_request req;
  req.tokens = actors::to_wire(matrix::Constant(1, width, 0.25f));
  req.deadline_ms = 500;
  req.want_record = false;
  bool ok = false;
  self->request(coord, std::chrono::seconds(2), actors::infer_atom::value, req)
    .receive([&](const actors::infer_result&) { ok = true; }, [&](const caf::error&) {});
  return ok;
}

/// Polls `done` every 10 ms for up to `limit`; the milliseconds it took, or -1.
template <class F>
double wait_for(F done, std::chrono::milliseconds limit) {
  const auto t0 = clock_type::now();
  while (clock_type::now() - t0 < limit) {
    if (done())
      return ms_since(t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

/// The head as the clients see it: reconnected (to whichever of the heads answers) when it
/// goes away.
class head_link {
public:
  head_link(caf::actor_system& sys, std::string addresses)
    : sys_(sys), addresses_(std::move(addresses)) {}
  actors::coordinator_actor get() {
    std::lock_guard lock{mu_};
    return coord_;
  }
  bool reconnect(std::chrono::seconds limit) {
    const auto until = clock_type::now() + limit;
    while (clock_type::now() < until) {
      if (auto c = net::connect(sys_, addresses_); c && net::status(sys_, *c)) {
        std::lock_guard lock{mu_};
        coord_ = *c;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

private:
  caf::actor_system& sys_;
  std::string addresses_;
  std::mutex mu_;
  actors::coordinator_actor coord_;
};

std::optional<size_t> index_of(const actors::cluster_status& s, const std::string& node) {
  for (size_t i = 0; i < s.nodes.size(); ++i)
    if (s.nodes[i] == node)
      return i;
  return std::nullopt;
}

bool ended(pid_t pid) {
  return ::waitpid(pid, nullptr, WNOHANG) == pid;
}

std::string quantiles(std::vector<double> v) {
  std::erase_if(v, [](double x) { return x < 0; });
  if (v.empty())
    return "-";
  char buf[96];
  std::snprintf(buf, sizeof buf, "p50 %.0f, max %.0f ms", net::quantile(v, 0.5),
                *std::max_element(v.begin(), v.end()));
  return buf;
}

} // namespace

int main(int argc, char** argv) {
  int seconds = 300, every = 10, nodes = 4, heartbeat_ms = 200, suspect_ms = 1000;
  size_t concurrency = 16, tokens = 4, max_faults = 1000;
  double stop_share = 0.5;
  std::uint64_t seed = 1;
  CLI::App app{"Chaos soak: kill and stop random nodes under checked load"};
  app.add_option("--seconds", seconds, "how long the soak runs")->check(CLI::Range(10, 3600));
  app.add_option("--every", every, "seconds between faults (+-20%)")->check(CLI::Range(3, 600));
  app.add_option("--faults", max_faults, "at most this many faults")->check(CLI::Range(1, 100000));
  app.add_option("--nodes", nodes, "nodes of the cluster, n1 the head")->check(CLI::Range(3, 8));
  app.add_option("--concurrency", concurrency)->check(CLI::Range(1, 1024));
  app.add_option("--tokens", tokens, "per request")->check(CLI::Range(1, 256));
  app.add_option("--stop-share", stop_share, "share of faults that are kill -STOP (else kill -9)")
    ->check(CLI::Range(0.0, 1.0));
  app.add_option("--heartbeat-ms", heartbeat_ms)->check(CLI::Range(10, 10000));
  app.add_option("--suspect-after-ms", suspect_ms)->check(CLI::Range(20, 60000));
  app.add_option("--seed", seed);
  bool standby = false;
  app.add_flag("--standby", standby,
               "a standby head s1 and etcd (started here): the head is faulted too, about one "
               "fault in --nodes; the experts live on n2..nN");
  bool netns = false;
  app.add_flag("--netns", netns, "every node in its own network namespace (root; iproute2)");
  double loss_share = 0;
  int loss_percent = 30, loss_seconds = 5;
  app.add_option("--loss-share", loss_share, "share of node faults that drop packets (--netns)")
    ->check(CLI::Range(0.0, 1.0));
  app.add_option("--loss-percent", loss_percent, "packets dropped into and out of the node")
    ->check(CLI::Range(1, 100));
  app.add_option("--loss-seconds", loss_seconds, "how long the packets are dropped")
    ->check(CLI::Range(1, 600));
  std::string readd = "clone";
  app.add_option("--readd", readd, "how a rejoined node's experts come back: clone (of a live "
                                   "member; zero where the layer is top-k) or zero, the node "
                                   "joining afresh with eoe node --join; or unit: started "
                                   "again as its unit would (eoe node --cluster), the head "
                                   "takes it back with its own experts")
    ->check(CLI::IsMember({"clone", "zero", "unit"}));
  CLI11_PARSE(app, argc, argv);
  if (loss_share > 0 && !netns) {
    std::fprintf(stderr, "bench_chaos: --loss-share drops packets between namespaces: add --netns\n");
    return 1;
  }
  if (netns && !net::netns_hosts::possible()) {
    std::fprintf(stderr, "bench_chaos: --netns needs root and iproute2 (ip netns)\n");
    return 1;
  }
  if (loss_share > 0 && !net::netns_hosts::can_drop_packets()) {
    std::fprintf(stderr, "bench_chaos: --loss-share needs nftables (apt-get install nftables)\n");
    return 1;
  }
  // Namespaces n1..nN, then s1's: the nodes in the cluster file's order.
  std::unique_ptr<net::netns_hosts> spaces;
  if (netns) {
    spaces = std::make_unique<net::netns_hosts>(nodes + (standby ? 1 : 0));
    if (!spaces->error().empty()) {
      std::fprintf(stderr, "bench_chaos: %s\n", spaces->error().c_str());
      return 1;
    }
  }
  const auto host_of = [&](size_t i) { return spaces ? spaces->hosts()[i] : std::string{"127.0.0.1"}; };
  const auto prefix_of = [&](size_t i) { return spaces ? spaces->prefix(i) : std::vector<std::string>{}; };

  const auto dir = fs::temp_directory_path() / ("eoe_bench_chaos_" + std::to_string(getpid()));
  fs::create_directories(dir);
  struct remove_dir {
    fs::path p;
    ~remove_dir() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{dir};
  const int base = 33000 + static_cast<int>(getpid() % 500) * 20;
  std::unique_ptr<net::local_etcd> etcd;
  if (standby) {
    if (!net::etcd_installed()) {
      std::fprintf(stderr, "bench_chaos: --standby needs etcd (apt-get install etcd-server)\n");
      return 1;
    }
    etcd = std::make_unique<net::local_etcd>(dir / "etcd", base + 15,
                                             spaces ? spaces->root_ip() : "127.0.0.1");
    if (etcd->proc.pid <= 0) {
      std::fprintf(stderr, "bench_chaos: etcd did not start:\n%s",
                   net::log_tail(dir / "etcd" / "etcd.log").c_str());
      return 1;
    }
  }
  const auto file = (dir / "cluster.toml").string();
  {
    std::ofstream out{file};
    out << "[cluster]\nname = \"chaos\"\nhead = \"n1\"\ndeadline_ms = 5000\nheartbeat_ms = "
        << heartbeat_ms << "\nsuspect_after_ms = " << suspect_ms << "\n";
    if (standby) {
      out << "heads = [\"n1\", \"s1\"]\nregistry = \"" << etcd->endpoint()
          << "\"\n\n[placement]\nlayers = [";
      const auto model = actors::load_model("");
      const auto& m = model->config;
      for (size_t l = 0; l < m.layers.size(); ++l) {
        out << (l ? ", " : "") << "[";
        for (int e = 0; e < m.layers[l].experts; ++e)
          out << (e ? ", " : "") << "\"n" << 2 + (e + static_cast<int>(l)) % (nodes - 1) << "\"";
        out << "]";
      }
      out << "]\n";
    }
    for (int n = 0; n < nodes; ++n)
      out << "\n[[node]]\nname = \"n" << n + 1 << "\"\nhost = \"" << host_of(n)
          << "\"\nport = " << base + n << "\n";
    if (standby)
      out << "\n[[node]]\nname = \"s1\"\nhost = \"" << host_of(nodes) << "\"\nport = "
          << base + nodes << "\n";
  }
  auto config = net::load_cluster_config(file);
  if (!config) {
    std::fprintf(stderr, "bench_chaos: %s\n", config.error().message.c_str());
    return 1;
  }
  const auto exe = (fs::path{net::self_executable()}.parent_path() / "eoe").string();
  std::vector<std::vector<std::string>> prefixes;
  for (size_t i = 0; i < config->nodes.size(); ++i)
    prefixes.push_back(prefix_of(i));
  auto procs = net::start_nodes(*config, file, exe, dir, prefixes, true);
  // A node's process started again (in its namespace, if any).
  const auto restart = [&](size_t p, std::vector<std::string> argv, const fs::path& log) {
    auto full = prefix_of(p);
    full.insert(full.end(), argv.begin(), argv.end());
    procs[p] = net::start_process(procs[p].node, full, log, true);
  };
  if (auto err = net::wait_cluster_ready(*config, procs, std::chrono::seconds(120)); !err.empty()) {
    std::fprintf(stderr, "bench_chaos: %s\n", err.c_str());
    net::stop_nodes(*config, procs, std::chrono::seconds(1));
    return 1;
  }
  const auto head = config->head_addresses();
  const int width = actors::load_model("")->config.input_dim;
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  head_link link{sys, head};
  if (!link.reconnect(std::chrono::seconds(10))) {
    std::fprintf(stderr, "bench_chaos: no head answered at %s\n", head.c_str());
    net::stop_nodes(*config, procs, std::chrono::seconds(1));
    return 1;
  }
  std::printf("bench_chaos: %d nodes %s, heartbeat_ms %d, suspect_after_ms %d, %zu "
              "clients x %zu tokens, a fault every ~%d s for %d s\nmachine: %s\n",
              nodes, netns ? "in network namespaces" : "on loopback", heartbeat_ms, suspect_ms,
              concurrency, tokens, every, seconds, bench::machine_line().c_str());
  if (loss_share > 0)
    std::printf("packet loss: %.0f%% of the node faults drop %d%% of a node's packets for %d s\n",
                loss_share * 100, loss_percent, loss_seconds);
  std::fflush(stdout);

  // The load: rounds of checked requests until the soak ends.
  std::atomic<bool> stop{false};
  net::load_report total;
  size_t rounds = 0, unsent = 0;
  const auto soak_start = clock_type::now();
  std::thread load([&] {
    for (std::uint64_t round = 0; !stop; ++round) {
      net::load_options opt;
      opt.requests = concurrency * 20;
      opt.concurrency = concurrency;
      opt.tokens = tokens;
      opt.deadline_ms = 5000;
      opt.seed = seed * 1'000'003 + round;
      const auto rep = net::run_load(sys, link.get(), opt);
      if (rep.failed + rep.lost > 0) // the head may have changed
        link.reconnect(std::chrono::seconds(10));
      if (rep.ok == 0 && rep.errors.size() == 1
          && rep.errors.begin()->first == "could not fetch the cluster's model") {
        ++unsent; // no head to send to: nothing was sent
        continue;
      }
      total.ok += rep.ok;
      total.wrong += rep.wrong;
      total.ties += rep.ties;
      for (auto& w : rep.tie_answers)
        std::printf("tie: round %llu: %s\n", static_cast<unsigned long long>(round), w.c_str());
      total.failed += rep.failed;
      total.lost += rep.lost;
      total.worst_difference = std::max(total.worst_difference, rep.worst_difference);
      for (auto& [text, n] : rep.errors)
        total.errors[text] += n;
      for (auto& w : rep.wrong_answers) {
        std::printf("WRONG at %.1f s: round %llu: %s\n",
                    std::chrono::duration<double>(clock_type::now() - soak_start).count(),
                    static_cast<unsigned long long>(round), w.c_str());
        std::fflush(stdout);
      }
      total.seconds += rep.seconds;
      ++rounds;
    }
  });

  std::mt19937_64 rng{seed};
  std::vector<fault> faults;
  const auto start = clock_type::now();
  const auto until = start + std::chrono::seconds(seconds);
  auto next = start + std::chrono::seconds(every);
  std::set<std::uint32_t> use_zero; // layers where a clone is refused (top-k)
  if (readd == "zero")
    for (std::uint32_t l = 0; l < 64; ++l)
      use_zero.insert(l);
  while (faults.size() < max_faults) {
    const auto jitter = std::uniform_real_distribution<double>{-0.2, 0.2}(rng) * every;
    std::this_thread::sleep_until(next + std::chrono::milliseconds(static_cast<int>(jitter * 1000)));
    next += std::chrono::seconds(every);
    if (clock_type::now() >= until)
      break;
    auto before = net::status(sys, link.get());
    if (!before)
      continue;
    if (standby && std::uniform_int_distribution<int>{0, nodes - 1}(rng) == 0) {
      // The head: killed or stopped; a standby must win etcd's election and serve.
      fault f;
      auto leader = etcd->client().get(net::keys_of_cluster("chaos").leader());
      const auto h = leader && *leader
                       ? std::find_if(procs.begin(), procs.end(),
                                      [&](auto& p) { return p.node == (*leader)->value; })
                       : procs.end();
      if (h == procs.end() || h->pid <= 0)
        continue;
      f.node = h->node;
      const bool stopped = std::uniform_real_distribution<double>{0, 1}(rng) < stop_share;
      f.kind = stopped ? "kill -STOP of the head" : "kill -9 of the head";
      const auto t0 = clock_type::now();
      ::kill(h->pid, stopped ? SIGSTOP : SIGKILL);
      const auto served = [&] {
        auto c = net::connect(sys, head);
        if (!c || !probe(sys, *c, width))
          return false;
        link.reconnect(std::chrono::seconds(5));
        return true;
      };
      if (wait_for(served, std::chrono::seconds(30)) >= 0)
        f.served_ms = ms_since(t0);
      if (stopped) // woken up, it finds its lease gone and exits
        ::kill(h->pid, SIGCONT);
      if (wait_for([&] { return ended(h->pid); }, std::chrono::seconds(15)) < 0) {
        f.problem = "the old head did not end; killed";
        ::kill(h->pid, SIGKILL);
        ::waitpid(h->pid, nullptr, 0);
      }
      // Started again, it stands by.
      const auto log = dir / (f.node + "-" + std::to_string(faults.size()) + ".log");
      restart(static_cast<size_t>(h - procs.begin()), {exe, "node", "--cluster", file, "--name", f.node},
              log);
      std::printf("fault %zu at %.1f s: %s %s: served again after %.0f ms%s%s\n",
                  faults.size() + 1, std::chrono::duration<double>(t0 - start).count(),
                  f.kind.c_str(), f.node.c_str(), f.served_ms, f.problem.empty() ? "" : "; ",
                  f.problem.c_str());
      std::fflush(stdout);
      faults.push_back(std::move(f));
      continue;
    }
    std::vector<size_t> candidates; // alive, not a head, with a process of ours
    for (size_t p = 1; p < procs.size(); ++p)
      if (auto i = index_of(*before, procs[p].node);
          procs[p].node != "s1" && i && before->alive[*i])
        candidates.push_back(p);
    if (candidates.empty())
      continue;
    const auto p = candidates[std::uniform_int_distribution<size_t>{0, candidates.size() - 1}(rng)];
    fault f;
    f.node = procs[p].node;
    const bool lossy = loss_share > 0 && std::uniform_real_distribution<double>{0, 1}(rng) < loss_share;
    const bool stopped = !lossy && std::uniform_real_distribution<double>{0, 1}(rng) < stop_share;
    f.kind = lossy ? "packet loss " + std::to_string(loss_percent) + "%"
                   : stopped ? "kill -STOP" : "kill -9";
    std::vector<std::uint32_t> layers_of; // the layer of each expert it hosted
    for (auto& e : before->experts)
      if (e.ends_with("@" + f.node))
        layers_of.push_back(static_cast<std::uint32_t>(std::stoul(e.substr(0, e.find('.')))));
    f.experts = layers_of.size();

    const auto t0 = clock_type::now();
    const auto lost = [&] {
      auto s = net::status(sys, link.get());
      auto i = s ? index_of(*s, f.node) : std::nullopt;
      return i && !s->alive[*i];
    };
    if (lossy) {
      // Packets dropped for loss_seconds: the node either keeps up (slowly) or is declared
      // lost; served again is the first request answered after the loss began.
      if (!spaces->drop_packets(p, loss_percent)) {
        f.problem = "nft did not take the rules";
      } else {
        const auto healed = t0 + std::chrono::seconds(loss_seconds);
        while (clock_type::now() < healed) {
          if (f.detect_ms < 0 && lost())
            f.detect_ms = ms_since(t0);
          if (f.served_ms < 0 && probe(sys, link.get(), width))
            f.served_ms = ms_since(t0);
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        spaces->heal(p);
        // Retransmissions back off: the node may still be declared lost after the heal.
        if (f.detect_ms < 0 && wait_for(lost, std::chrono::milliseconds(2 * suspect_ms)) >= 0)
          f.detect_ms = ms_since(t0);
        if (f.served_ms < 0
            && wait_for([&] { return probe(sys, link.get(), width); }, std::chrono::seconds(15)) >= 0)
          f.served_ms = ms_since(t0);
      }
      if (f.detect_ms < 0) { // it kept up: nothing to restore
        std::printf("fault %zu at %.1f s: %s of %s for %d s: not declared lost, served again "
                    "after %.0f ms%s%s\n",
                    faults.size() + 1, std::chrono::duration<double>(t0 - start).count(),
                    f.kind.c_str(), f.node.c_str(), loss_seconds, f.served_ms,
                    f.problem.empty() ? "" : "; ", f.problem.c_str());
        std::fflush(stdout);
        faults.push_back(std::move(f));
        continue;
      }
    } else {
      ::kill(procs[p].pid, stopped ? SIGSTOP : SIGKILL);
      if (wait_for(lost, std::chrono::seconds(15)) >= 0)
        f.detect_ms = ms_since(t0);
      if (wait_for([&] { return probe(sys, link.get(), width); }, std::chrono::seconds(15)) >= 0)
        f.served_ms = ms_since(t0);
    }
    if (stopped) // woken up, it is fenced and exits
      ::kill(procs[p].pid, SIGCONT);
    if (wait_for([&] { return ended(procs[p].pid); }, std::chrono::seconds(15)) < 0) {
      f.problem = "the " + f.kind + " process did not end; killed";
      ::kill(procs[p].pid, SIGKILL);
      ::waitpid(procs[p].pid, nullptr, 0);
    }
    // A fresh process: started as its unit would, at its address, for the head to take back;
    // or joining under the same name, on a port the system picks.
    const auto log = dir / (f.node + "-" + std::to_string(faults.size()) + ".log");
    if (readd == "unit")
      restart(p, {exe, "node", "--cluster", file, "--name", f.node}, log);
    else
      restart(p, {exe, "node", "--join", head, "--name", f.node, "--listen", host_of(p) + ":0"},
              log);
    const auto back = [&] {
      auto s = net::status(sys, link.get());
      auto i = s ? index_of(*s, f.node) : std::nullopt;
      return i && s->alive[*i];
    };
    if (wait_for(back, std::chrono::seconds(30)) >= 0)
      f.rejoin_ms = ms_since(t0);
    else if (f.problem.empty())
      f.problem = "did not rejoin:\n" + net::log_tail(log, 5);
    // Its experts back: its own, restored by the head (unit), or clones of live members of the
    // layers it hosted.
    size_t restored = 0;
    if (readd == "unit" && f.rejoin_ms >= 0) {
      const auto all_back = [&] {
        auto s = net::status(sys, link.get());
        if (!s)
          return false;
        size_t here = 0;
        for (auto& e : s->experts)
          here += e.ends_with("@" + f.node);
        return here == layers_of.size();
      };
      if (wait_for(all_back, std::chrono::seconds(15)) >= 0)
        restored = layers_of.size();
      else if (f.problem.empty())
        f.problem = "back without its experts:\n" + net::log_tail(log, 5);
    }
    for (auto layer : layers_of) {
      if (f.rejoin_ms < 0 || readd == "unit")
        break;
      auto s = net::status(sys, link.get());
      if (!s)
        break;
      std::string source;
      for (auto& e : s->experts)
        if (e.starts_with(std::to_string(layer) + ".")) {
          source = e.substr(0, e.find('@'));
          break;
        }
      if (source.empty())
        continue;
      caf::scoped_actor self{sys};
      for (int attempt = 0; attempt < 100; ++attempt) { // a change in progress: again
        bool done = false, again = false;
        // A clone splits a threshold layer's expert without changing outputs; a top-k
        // layer takes a zero expert instead.
        self->request(link.get(), std::chrono::seconds(30), actors::add_expert_atom::value, layer,
                      f.node, use_zero.contains(layer) ? std::string{"zero"} : "clone:" + source)
          .receive([&](std::uint64_t epoch) {
                     done = true;
                     f.epochs += " " + std::to_string(epoch);
                   },
                   [&](const caf::error& e) {
                     const auto text = actors::describe(e);
                     again = text.find("in progress") != std::string::npos;
                     if (text.find("only threshold layers split") != std::string::npos
                         && !use_zero.contains(layer)) {
                       use_zero.insert(layer);
                       again = true;
                       return;
                     }
                     if (!again && f.problem.empty())
                       f.problem = "re-adding an expert: " + actors::describe(e);
                   });
        if (done)
          ++restored;
        if (!again)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    if (restored == layers_of.size() && f.rejoin_ms >= 0)
      f.restore_ms = ms_since(t0);
    std::printf("fault %zu at %.1f s: %s %s (%zu experts): lost after %.0f ms, served again "
                "after %.0f ms, rejoined after %.0f ms, experts back after %.0f ms (epochs%s)%s%s\n",
                faults.size() + 1,
                std::chrono::duration<double>(t0 - start).count(), f.kind.c_str(),
                f.node.c_str(), f.experts, f.detect_ms, f.served_ms, f.rejoin_ms, f.restore_ms,
                f.epochs.c_str(), f.problem.empty() ? "" : "; ", f.problem.c_str());
    std::fflush(stdout);
    faults.push_back(std::move(f));
    if (clock_type::now() >= until)
      break;
  }
  std::this_thread::sleep_until(until);
  stop = true;
  load.join();
  const auto after = net::status(sys, link.get());

  const size_t requests = total.ok + total.ties + total.failed + total.wrong + total.lost;
  std::printf("\n%zu requests in %zu rounds over %.0f s: %zu ok, %zu failed with an error, %zu "
              "wrong, %zu lost; %zu more differ at a top-k near-tie of the reference (gap <= "
              "1e-5; the worst difference of all %.2g)\n",
              requests, rounds, ms_since(start) / 1000, total.ok, total.failed, total.wrong,
              total.lost, total.ties, total.worst_difference);
  for (auto& [text, n] : total.errors)
    std::printf("  %zu x %s\n", n, text.c_str());
  if (unsent)
    std::printf("  (%zu rounds found no head to send to and sent nothing)\n", unsent);
  std::map<std::string, std::vector<fault*>> by_kind;
  size_t problems = 0;
  for (auto& f : faults) {
    by_kind[f.kind].push_back(&f);
    problems += !f.problem.empty();
  }
  for (auto& [kind, list] : by_kind) {
    std::vector<double> d, s, r, e;
    for (auto* f : list) {
      d.push_back(f->detect_ms);
      s.push_back(f->served_ms);
      r.push_back(f->rejoin_ms);
      e.push_back(f->restore_ms);
    }
    const auto declared = std::count_if(d.begin(), d.end(), [](double x) { return x >= 0; });
    std::printf("%zu x %s: declared lost (%td of them) %s; served again %s; rejoined %s; experts "
                "back %s\n",
                list.size(), kind.c_str(), declared, quantiles(d).c_str(), quantiles(s).c_str(),
                quantiles(r).c_str(), quantiles(e).c_str());
  }
  if (after)
    std::printf("final epoch %llu, %zu experts\n",
                static_cast<unsigned long long>(after->epoch), after->experts.size());
  std::printf("%zu of %zu faults with a problem\n", problems, faults.size());
  net::stop_nodes(*config, procs, std::chrono::seconds(5));
  return total.wrong == 0 && total.lost == 0 && problems == 0 ? 0 : 1;
}
