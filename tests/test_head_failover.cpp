// Standby heads over etcd (Debian's etcd-server; skipped without it): 4 `eoe node` processes,
// two of them head candidates that host no experts. The head is killed with -9 (or stopped
// with -STOP) after a hot-add and a removal; the standby wins etcd's election, resumes the
// registry's epoch, and serves the same experts and the same answers, bit for bit; a stopped
// head, continued, finds its lease gone and exits; the old head, started again, stands by;
// the shutdown ends the standby too.

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "ask.hpp"
#include "net/local_etcd.hpp"
#include "experts/model/checkpoint.hpp"
#include "mesh_model.hpp"
#include "net/client.hpp"
#include "net/etcd_registry.hpp"
#include "node_processes.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <sys/wait.h>
#include <thread>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::test;
namespace fs = std::filesystem;

namespace {

/// A cluster file: n1 and s1 are head candidates; the experts live on n2 and n3.
std::string write_cluster(const fs::path& dir, const std::string& registry,
                          const experts::model_config& m) {
  fs::create_directories(dir);
  std::ofstream out{dir / "cluster.toml"};
  out << "[cluster]\nname = \"failover\"\ncheckpoint = \"" << checkpoint() << "\"\nhead = \"n1\"\n"
      << "heads = [\"n1\", \"s1\"]\nregistry = \"" << registry << "\"\n\n[placement]\nlayers = [";
  for (size_t l = 0; l < m.layers.size(); ++l) {
    out << (l ? ", " : "") << "[";
    for (int e = 0; e < m.layers[l].experts; ++e)
      out << (e ? ", " : "") << "\"n" << 2 + (e + static_cast<int>(l)) % 2 << "\"";
    out << "]";
  }
  out << "]\n";
  const char* names[] = {"n1", "n2", "n3", "s1"};
  for (int i = 0; i < 4; ++i)
    out << "\n[[node]]\nname = \"" << names[i] << "\"\nhost = \"127.0.0.1\"\nport = "
        << base_port() + i << "\n";
  return (dir / "cluster.toml").string();
}

std::string file_text(const fs::path& p) {
  std::ifstream in{p};
  return {std::istreambuf_iterator<char>{in}, {}};
}

} // namespace

TEST_CASE("kill -9 or kill -STOP of the head with a standby and etcd: the standby serves the "
          "same epoch, experts and answers within seconds; a stopped head woken up exits",
          "[mesh][processes][failure][etcd]") {
  const int signal = GENERATE(SIGKILL, SIGSTOP);
  INFO((signal == SIGKILL ? "kill -9" : "kill -STOP"));
  if (!net::etcd_installed()) {
    WARN("SKIPPED: etcd is not installed (apt-get install etcd-server)");
    return;
  }
  const auto dir = fs::temp_directory_path() / ("eoe_test_failover_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  net::local_etcd etcd{dir / "etcd", base_port() + 6};
  REQUIRE(etcd.proc.pid > 0);
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  node_processes pc{write_cluster(dir, etcd.endpoint(), m->config), dir};
  const auto heads = pc.config.head_addresses();
  const auto keys = net::keys_of_cluster("failover");

  std::vector<matrix> inputs;
  for (int i = 0; i < 5; ++i)
    inputs.push_back(random_input(1 + i, 12, 700 + i));
  auto answers = [&](caf::actor_system& sys, const coordinator_actor& coord) {
    std::vector<std::string> out;
    for (auto& x : inputs)
      out.push_back(ask<infer_result>(sys, coord, std::chrono::seconds(10), infer_atom::value,
                                      request_of(x))
                      .output.bytes);
    return out;
  };
  cluster_status before;
  std::vector<std::string> outputs;
  {
    mesh_config cfg;
    caf::actor_system sys{cfg};
    auto coord = net::connect(sys, heads);
    REQUIRE(coord);
    auto change = [&](auto... args) {
      return ask<std::uint64_t>(sys, *coord, std::chrono::seconds(10), args...);
    };
    CHECK(change(add_expert_atom::value, std::uint32_t{2}, std::string{"n3"},
                 std::string{"clone:2.1"}) == 2);
    CHECK(change(remove_expert_atom::value, std::uint32_t{1}, std::uint32_t{1}) == 3);
    auto s = net::status(sys, *coord);
    REQUIRE(s);
    before = *s;
    outputs = answers(sys, *coord);
  }
  REQUIRE(before.epoch == 3);
  CHECK(std::count(before.experts.begin(), before.experts.end(), "2.4@n3") == 1);
  CHECK_THAT(before.registry, Catch::Contains(etcd.endpoint() + " " + keys.registry()));

  // Kill whichever candidate leads.
  auto leader = etcd.client().get(keys.leader());
  REQUIRE(leader.has_value());
  REQUIRE(leader->has_value());
  const auto victim_name = (*leader)->value;
  const auto victim = std::find_if(pc.nodes.begin(), pc.nodes.end(),
                                   [&](auto& p) { return p.node == victim_name; });
  REQUIRE(victim != pc.nodes.end());
  const auto successor = victim_name == "n1" ? "s1" : "n1";
  ::kill(victim->pid, signal);
  if (signal == SIGKILL) {
    ::waitpid(victim->pid, nullptr, 0);
    victim->pid = 0;
  }
  const auto killed = std::chrono::steady_clock::now();

  mesh_config cfg;
  caf::actor_system sys{cfg};
  std::optional<coordinator_actor> coord;
  while (std::chrono::steady_clock::now() - killed < std::chrono::seconds(20)) {
    if (auto c = net::connect(sys, heads)) {
      caf::scoped_actor self{sys};
      bool ok = false;
      self->request(*c, std::chrono::seconds(2), infer_atom::value, request_of(inputs[0], 1000))
        .receive([&](const infer_result&) { ok = true; }, [&](const caf::error&) {});
      if (ok) {
        coord = *c;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double served_after_ms =
    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed).count();
  REQUIRE(coord);
  WARN("head " << victim_name << " killed; " << successor << " served after " << served_after_ms
               << " ms");
  CHECK(served_after_ms < 6000);
  auto s = net::status(sys, *coord);
  REQUIRE(s);
  CHECK(s->epoch == before.epoch);
  CHECK(s->experts == before.experts);
  CHECK_THAT(s->registry, Catch::Contains("resumed epoch 3"));
  CHECK(answers(sys, *coord) == outputs);
  CHECK(etcd.client().get(keys.leader()).value().value().value == successor);
  CHECK_THAT(file_text(dir / (std::string{successor} + ".log")),
             Catch::Contains("node " + std::string{successor} + " leads cluster (term ")
               && Catch::Contains("the head before, " + victim_name + ", lost its lease"));

  if (signal == SIGSTOP) {
    // Woken up, the old head finds its lease gone and exits before serving anything.
    ::kill(victim->pid, SIGCONT);
    int status = 0;
    for (int i = 0; i < 200 && ::waitpid(victim->pid, &status, WNOHANG) != victim->pid; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 3);
    victim->pid = 0;
    CHECK_THAT(file_text(victim->log),
               Catch::Contains("eoe node " + victim_name + ": lost the head's lease in etcd ("));
    CHECK(answers(sys, *coord) == outputs); // the nodes stayed with the new head
  }
  // The old head, started again, stands by.
  *victim = net::start_process(victim_name,
                               {eoe_binary(), "node", "--cluster", (dir / "cluster.toml").string(),
                                "--name", victim_name},
                               dir / (victim_name + "-again.log"), true);
  const auto standby_line = "node " + victim_name + " stands by: " + successor + " is the head";
  for (int i = 0; i < 100 && file_text(dir / (victim_name + "-again.log")).find(standby_line)
                               == std::string::npos;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_THAT(file_text(dir / (victim_name + "-again.log")), Catch::Contains(standby_line));
  // The shutdown ends every process, the standby too.
  const auto killed_at_stop = pc.stop();
  std::string logs;
  for (auto& p : pc.nodes)
    logs += p.node + " (" + p.log.string() + "):\n" + net::log_tail(p.log, 8);
  INFO(logs);
  CHECK(killed_at_stop == 0);
  CHECK_THAT(file_text(dir / (victim_name + "-again.log")),
             Catch::Contains("node " + victim_name + ": the cluster was shut down (by " + successor
                             + "); exiting"));
}
