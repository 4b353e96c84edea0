// The mesh as 3 real `eoe node` processes on loopback: it equals the reference forward, a
// contribution crosses into a node once, and the cluster shuts down cleanly. Where the test
// runs as root with `ip netns`, the same in 3 network namespaces joined by veth pairs.

#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "experts/model/checkpoint.hpp"
#include "context_model.hpp"
#include "mesh_model.hpp"
#include "net/client.hpp"
#include "net/load_generator.hpp"
#include "net/netns_hosts.hpp"
#include "net/process_cluster.hpp"
#include "node_processes.hpp"
#include "random_model.hpp"
#include "raw_socket.hpp"
#include "data_plane_frame.hpp"
#include "actors/wire.hpp"
#include "net/cluster_link.hpp"
#include "follow.hpp"
#include "http_client.hpp"
#include "experts/base/utf8.hpp"
#include "trace_log.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <csignal>
#include <optional>
#include <thread>
#include <unistd.h>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::test;
namespace fs = std::filesystem;

namespace {



/// A cluster file for 3 nodes at the given hosts, on ports no other test run uses, with the
/// lines of `extra` (a [trace] table, say).
std::string write_cluster(const fs::path& dir, const std::vector<std::string>& hosts,
                          const std::string& extra = "") {
  fs::create_directories(dir);
  const int base = base_port();
  std::ofstream out{dir / "cluster.toml"};
  out << "[cluster]\nname = \"test3\"\ncheckpoint = \"" << checkpoint() << "\"\nhead = \"n1\"\n"
      << extra << "\n";
  for (size_t i = 0; i < hosts.size(); ++i)
    out << "\n[[node]]\nname = \"n" << i + 1 << "\"\nhost = \"" << hosts[i] << "\"\nport = "
        << base + static_cast<int>(i) << "\n";
  return (dir / "cluster.toml").string();
}

/// 3 `eoe node` processes of a cluster file written to dir. Hosts and command prefixes per
/// node.
struct process_cluster : test::node_processes {
  process_cluster(const fs::path& dir, const std::vector<std::string>& hosts,
                  const std::vector<std::vector<std::string>>& prefix = {},
                  const std::string& extra = "")
    : node_processes(write_cluster(dir, hosts, extra), dir, prefix) {}
};

/// Runs the equivalence and fan-out checks against a started cluster (`counts` false: not the
/// relays' message counts, which a node started again counts from 0).
void exercise(const net::cluster_config& c, bool counts = true) {
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, c.nodes[0].address());
  REQUIRE(coord);
  caf::scoped_actor self{sys};
  std::vector<matrix> inputs;
  std::vector<decltype(self->request(*coord, caf::infinite, infer_atom::value, infer_request{}))>
    pending;
  constexpr int requests = 20;
  for (int i = 0; i < requests; ++i) {
    inputs.push_back(random_input(1 + i % 9, 12, 300 + i));
    pending.push_back(self->request(*coord, std::chrono::seconds(30), infer_atom::value,
                                    request_of(inputs.back())));
  }
  double worst = 0;
  for (size_t i = 0; i < pending.size(); ++i)
    pending[i].receive([&](const infer_result& r) { worst = std::max(worst, compare(*m, inputs[i], r)); },
                       [&](const caf::error& err) { FAIL("request " << i << ": " << describe(err)); });
  // (1e-5: the requests that came while the mesh was busy ran stacked in batches, in GEMMs of
  // other shapes that sum in another order)
  CHECK(worst <= 1e-5);
  // Messages go per batch: each crosses the mesh as one request does.
  std::uint64_t batches = 0;
  self->request(*coord, std::chrono::seconds(5), status_atom::value)
    .receive([&](const cluster_status& st) { batches = st.batches; },
             [&](const caf::error& err) { FAIL(describe(err)); });
  CHECK(batches >= 1);
  CHECK(batches <= static_cast<std::uint64_t>(requests));
  const auto want = expected_relay_counts(m->config, round_robin_placement(m->config, 3), 0, 3);
  if (counts) {
    self->request(*coord, std::chrono::seconds(5), stats_atom::value)
      .receive(
        [&](const std::vector<relay_stats>& stats) {
          REQUIRE(stats.size() == 3);
          std::uint64_t total = 0, naive = 0;
          for (size_t n = 0; n < 3; ++n) {
            INFO("node " << n << ", " << batches << " batches");
            CHECK(stats[n].remote_messages == batches * want.remote[n]);
            CHECK(stats[n].remote_messages <= batches * want.naive_remote[n]);
            CHECK(stats[n].remote_bytes > 0);
            total += stats[n].remote_messages;
            naive += batches * want.naive_remote[n];
          }
          // A node hosting one expert of a layer gets what one message per expert would be;
          // nodes with several get fewer.
          CHECK(total < naive);
        },
        [&](const caf::error& err) { FAIL(describe(err)); });
  }
  // A long context whose shards live on the three processes gives what the math gives (as it
  // does in one process: test_context_mesh).
  context_actor contexts;
  self->request(*coord, std::chrono::seconds(5), context_atom::value)
    .receive([&](context_actor ctx) { contexts = ctx; }, [&](const caf::error& e) { FAIL(describe(e)); });
  const test_context tc;
  const auto id = tc.fill(self, contexts);
  const auto shards = tc.shards();
  const std::vector<std::int64_t> pos{0, 99, 100, 555, 999};
  const auto q = queries(static_cast<Eigen::Index>(pos.size()), 8);
  for (std::uint8_t mode : {0, 1, 2})
    self->request(contexts, std::chrono::seconds(30), query_atom::value, id,
                  query_of(q, pos, mode, 5, 0.25))
      .receive(
        [&](const wire_partial& w) {
          const auto want = expected(shards, q, pos, mode, 5, 0.25);
          CHECK((from_wire(w).out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
        },
        [&](const caf::error& e) { FAIL(describe(e)); });
}

/// Sends one small request and reports whether it was answered.
bool probe(caf::actor_system& sys, const coordinator_actor& coord) {
  caf::scoped_actor self{sys};
  bool ok = false;
  self->request(coord, std::chrono::seconds(5), infer_atom::value,
                request_of(random_input(2, 12, 7777), 1000))
    .receive([&](const infer_result&) { ok = true; }, [&](const caf::error&) {});
  return ok;
}

/// The head's status once `done(status)` holds (asked every 100 ms, for up to 15 s), or none.
template <class Done>
std::optional<cluster_status> status_when(caf::actor_system& sys, const coordinator_actor& coord,
                                          Done done) {
  for (int i = 0; i < 150; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (auto now = net::status(sys, coord); now && done(*now))
      return std::move(*now);
  }
  return std::nullopt;
}

/// A checked load through the CAF client during which node n3 gets `signal` once `after`
/// requests are answered; the load's report and how long after the signal a probe was served.
struct faulted_load {
  net::load_report rep;
  std::chrono::steady_clock::duration recovery{};
};

faulted_load load_with_fault(caf::actor_system& sys, const coordinator_actor& coord,
                             const net::node_process& victim, int signal,
                             const net::load_options& opt, size_t after) {
  REQUIRE(victim.node == "n3");
  faulted_load out;
  std::atomic<size_t> answered{0};
  std::thread load([&] { out.rep = net::run_load(sys, coord, opt, &answered); });
  while (answered < after)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ::kill(victim.pid, signal);
  const auto at = std::chrono::steady_clock::now();
  while (!probe(sys, coord) && std::chrono::steady_clock::now() - at < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  out.recovery = std::chrono::steady_clock::now() - at;
  load.join();
  return out;
}

bool can_use_netns() {
  return net::netns_hosts::possible();
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
bool ended(pid_t pid) {
  if (::kill(pid, 0) != 0)
    return true;
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  return !stat || state == "Z";
}

} // namespace

// First of the file: it forks, which is safe while this process runs no other threads.
TEST_CASE("node processes started for a test end with it, even when it is killed -9",
          "[mesh][processes]") {
  const auto dir = fs::temp_directory_path() / ("eoe_orphans_" + std::to_string(getpid()));
  const scratch_dir scratch{dir}; // after the reaper below: the nodes are gone first
  fs::create_directories(dir);
  const auto file = (dir / "cluster.toml").string();
  {
    std::ofstream out{file};
    out << "[cluster]\ncheckpoint = \"" << checkpoint() << "\"\n";
    for (int i = 0; i < 3; ++i)
      out << "\n[[node]]\nname = \"n" << i + 1 << "\"\nport = " << base_port() + 5 + i << "\n";
  }
  auto c = net::load_cluster_config(file);
  REQUIRE(c.has_value());
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t runner = ::fork(); // stands for a test or benchmark that a timeout kills
  REQUIRE(runner >= 0);
  if (runner == 0) {
    ::close(fds[0]);
    auto nodes = net::start_nodes(*c, file, eoe_binary(), dir, {}, true);
    std::vector<pid_t> started;
    for (auto& n : nodes)
      started.push_back(n.pid);
    const auto bytes = static_cast<ssize_t>(sizeof(pid_t) * started.size());
    if (::write(fds[1], started.data(), static_cast<size_t>(bytes)) != bytes)
      std::_Exit(1);
    ::close(fds[1]);
    for (;;)
      ::pause();
  }
  ::close(fds[1]);
  std::vector<pid_t> pids(3, 0);
  // Whatever happens below, the runner and its nodes go: an orphaned runner would hold this
  // test's output pipe, and ctest would wait for it until its timeout.
  struct reaper {
    pid_t runner;
    const std::vector<pid_t>& nodes;
    ~reaper() {
      if (runner > 0) {
        ::kill(runner, SIGKILL);
        ::waitpid(runner, nullptr, 0);
      }
      for (auto pid : nodes)
        if (pid > 0 && !ended(pid))
          ::kill(pid, SIGKILL);
    }
  } reap{runner, pids};
  // A pipe read returns what is there: read until the three pids are in, or the runner ends.
  size_t got = 0;
  const auto want = sizeof(pid_t) * pids.size();
  while (got < want) {
    const auto n = ::read(fds[0], reinterpret_cast<char*>(pids.data()) + got, want - got);
    if (n <= 0)
      break;
    got += static_cast<size_t>(n);
  }
  ::close(fds[0]);
  REQUIRE(got == want);
  std::this_thread::sleep_for(std::chrono::milliseconds(300)); // the nodes are starting
  for (auto pid : pids)
    CHECK_FALSE(ended(pid));
  ::kill(runner, SIGKILL);
  ::waitpid(runner, nullptr, 0);
  reap.runner = 0; // reaped: the pid may be reused from here on
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until
         && !std::all_of(pids.begin(), pids.end(), ended))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (auto pid : pids) {
    INFO("node pid " << pid);
    CHECK(ended(pid));
  }
}

TEST_CASE("3 node processes on loopback equal the reference and fan out once per node",
          "[mesh][processes]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_cluster_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  process_cluster pc{dir, {"127.0.0.1", "127.0.0.1", "127.0.0.1"}};
  exercise(pc.config);
  CHECK(pc.stop() == 0); // every node exits on the shutdown
}

TEST_CASE("a head process with a gateway answers bodies and targets that are not UTF-8 with "
          "a 400 and stays up",
          "[mesh][processes][gateway]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_cluster_utf8_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  const auto gw_port = static_cast<std::uint16_t>(base_port() + 8);
  process_cluster pc{dir, {"127.0.0.1", "127.0.0.1"}, {},
                     "[gateway]\nlisten = \"127.0.0.1:" + std::to_string(gw_port)
                       + "\"\nadmin_token = \"t0ken\"\n"};
  const auto x = random_input(3, 12, 42);
  nlohmann::json rows = nlohmann::json::array();
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    nlohmann::json row = nlohmann::json::array();
    for (Eigen::Index c = 0; c < x.cols(); ++c)
      row.push_back(x(i, c));
    rows.push_back(row);
  }
  const std::string good = nlohmann::json{{"tokens", rows}}.dump();
  // The issue's requests: ff fe before the JSON, a key with a 0xff byte; then a target, and an
  // admin body with and without the token.
  const std::vector<std::tuple<std::string, std::string, std::string, std::string, unsigned>> bad{
    {"POST", "/v1/infer", "\xff\xfe" + good, "", 400},
    {"POST", "/v1/infer", "{\"tokens\": [[1]], \"k\xff\": 1}", "", 400},
    {"GET", "/nope\xff", "", "", 400},
    {"POST", "/v1/experts", "{\"layer\": 1, \"node\": \"\xff\"}", "", 401},
    {"POST", "/v1/experts", "{\"layer\": 1, \"node\": \"\xff\"}", "Authorization: Bearer t0ken\r\n", 400},
  };
  for (auto& [method, target, body, headers, status] : bad) {
    INFO(method << " " << experts::quote_input(target));
    const auto r = call_http(gw_port, method, target, body, headers);
    CHECK(r.status == status);
    CHECK(nlohmann::json::parse(r.body, nullptr, false).is_object());
  }
  CHECK_FALSE(ended(pc.nodes[0].pid));
  // The head still serves, and right: the answer is the reference forward's.
  const auto r = call_http(gw_port, "POST", "/v1/infer", good);
  REQUIRE(r.status == 200);
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  auto be = kernels::make_cpu_backend();
  const auto want = experts::forward(*be, *m, x);
  REQUIRE(want.has_value());
  const auto out = nlohmann::json::parse(r.body).at("output");
  REQUIRE(out.size() == static_cast<size_t>(want->output.rows()));
  double worst = 0;
  for (Eigen::Index i = 0; i < want->output.rows(); ++i)
    for (Eigen::Index c = 0; c < want->output.cols(); ++c)
      worst = std::max(worst, std::abs(out[static_cast<size_t>(i)][static_cast<size_t>(c)].get<double>()
                                       - want->output(i, c)));
  CHECK(worst <= 1e-6);
  CHECK(pc.stop() == 0);
}

TEST_CASE("kill -9 of one node of 3 mid-load: 0 lost, 0 wrong, the failures name the node, "
          "service again within 2 s; started again as its unit would, it is back with its "
          "experts",
          "[mesh][processes][failure]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_kill_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  process_cluster pc{dir, {"127.0.0.1", "127.0.0.1", "127.0.0.1"}};
  mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, pc.config.nodes[0].address());
  REQUIRE(coord);
  const auto at_start = net::status(sys, *coord);
  REQUIRE(at_start);
  net::load_options opt;
  opt.requests = 2000;
  opt.concurrency = 64;
  opt.tokens = 3;
  opt.deadline_ms = 5000;
  const auto [rep, recovery] = load_with_fault(sys, *coord, pc.nodes[2], SIGKILL, opt, 400);
  const double recovery_ms = std::chrono::duration<double, std::milli>(recovery).count();
  INFO("ok " << rep.ok << " wrong " << rep.wrong << " failed " << rep.failed << " lost "
             << rep.lost << "; recovered after " << recovery_ms << " ms");
  for (auto& [text, n] : rep.errors)
    INFO(n << " x " << text);
  CHECK(rep.lost == 0);
  CHECK(rep.wrong == 0);
  CHECK(rep.ok + rep.failed == opt.requests);
  CHECK(rep.ok > 0);
  for (auto& [text, n] : rep.errors)
    CHECK_THAT(text, Catch::Contains("node n3"));
  CHECK(recovery < std::chrono::seconds(2));
  // The registry publishes an epoch without n3's experts.
  auto s = net::status(sys, *coord);
  REQUIRE(s);
  CHECK_FALSE(s->alive[2]);
  CHECK(s->experts_per_node[2] == 0);
  // n3 started again at its address, as its unit would: the head tries the address of a lost
  // node of the cluster file, takes it back and, nothing having changed since, restores its
  // experts (same stable ids, same weights) in the next epoch; answers equal the reference.
  pc.restart(2);
  const auto back = status_when(sys, *coord, [&](const cluster_status& now) {
    return now.alive[2] && now.epoch > s->epoch;
  });
  REQUIRE(back);
  INFO("n3's log:\n" << net::log_tail(pc.nodes[2].log));
  CHECK(back->epoch == s->epoch + 1);
  CHECK(back->experts == at_start->experts);
  CHECK(back->experts_per_node == at_start->experts_per_node);
  opt.requests = 300;
  const auto after = net::run_load(sys, *coord, opt);
  CHECK(after.ok == opt.requests);
  CHECK(after.wrong == 0);
  // Then n2 and n3 again: a routed layer would keep 1 expert, which no model may have (a
  // router picks among 2 or more). Requests fail saying so, not with the relay's complaint
  // about the plan.
  ::kill(pc.nodes[1].pid, SIGKILL);
  for (int i = 0; i < 100 && !probe(sys, *coord); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(pc.nodes[2].pid, SIGKILL);
  std::string refused;
  for (int i = 0; i < 100 && refused.empty(); ++i) {
    caf::scoped_actor self{sys};
    self->request(*coord, std::chrono::seconds(5), infer_atom::value,
                  request_of(random_input(2, 12, 7000 + static_cast<std::uint64_t>(i)), 2000))
      .receive([](const infer_result&) {},
               [&](const caf::error& e) {
                 if (describe(e).find("without node n3") != std::string::npos)
                   refused = describe(e);
               });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK_THAT(refused, Catch::Contains("would keep 1 expert without node n3; a routed layer "
                                      "needs 2"));
  // n3 started again heals it: its experts come back into the epoch it was lost from.
  pc.restart(2);
  bool serves = false;
  for (int i = 0; i < 150 && !serves; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    serves = probe(sys, *coord);
  }
  INFO("n3's log:\n" << net::log_tail(pc.nodes[2].log));
  CHECK(serves);
  pc.stop();
}

TEST_CASE("kill -STOP of one node of 3 mid-load: declared lost for its silence, the failures "
          "say so, service again within 2 s; woken up, it is fenced and exits",
          "[mesh][processes][failure]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_stop_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  process_cluster pc{dir, {"127.0.0.1", "127.0.0.1", "127.0.0.1"}, {},
                     "heartbeat_ms = 100\nsuspect_after_ms = 500\n"};
  mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, pc.config.nodes[0].address());
  REQUIRE(coord);
  net::load_options opt;
  opt.requests = 1500;
  opt.concurrency = 32;
  opt.tokens = 3;
  opt.deadline_ms = 5000;
  const auto victim = pc.nodes[2];
  // Connected, and silent.
  const auto [rep, recovery] = load_with_fault(sys, *coord, victim, SIGSTOP, opt, 300);
  const double recovery_ms = std::chrono::duration<double, std::milli>(recovery).count();
  INFO("ok " << rep.ok << " wrong " << rep.wrong << " failed " << rep.failed << " lost " << rep.lost
             << "; recovered after " << recovery_ms << " ms");
  for (auto& [text, n] : rep.errors)
    INFO(n << " x " << text);
  CHECK(rep.lost == 0);
  CHECK(rep.wrong == 0);
  CHECK(rep.ok + rep.failed == opt.requests);
  for (auto& [text, n] : rep.errors)
    CHECK_THAT(text, Catch::Contains("node n3") && Catch::Contains("n3 silent for"));
  CHECK(recovery < std::chrono::seconds(2));
  auto s = net::status(sys, *coord);
  REQUIRE(s);
  CHECK_FALSE(s->alive[2]);
  CHECK_THAT(s->lost[2], Catch::StartsWith("n3 silent for"));
  CHECK(s->lost_silent == 1);
  CHECK(s->lost_down == 0);
  CHECK(s->experts_per_node[2] == 0);
  // Woken up, it answers a ping, is told it was declared lost, and exits saying why.
  ::kill(victim.pid, SIGCONT);
  const auto woke = std::chrono::steady_clock::now();
  while (!ended(victim.pid) && std::chrono::steady_clock::now() - woke < std::chrono::seconds(15))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(ended(victim.pid));
  std::ifstream log{victim.log};
  const std::string text{std::istreambuf_iterator<char>(log), {}};
  CHECK_THAT(text, Catch::Contains("eoe node n3: the head declared this node lost (n3 silent for"));
  int status = 0;
  REQUIRE(::waitpid(victim.pid, &status, 0) == victim.pid);
  pc.nodes[2].pid = 0;
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 4); // not 0: its unit (Restart=on-failure) starts it again
  CHECK(probe(sys, *coord)); // the others serve on
  // Started again, as its unit would: taken back with its experts.
  pc.restart(2);
  const auto back = status_when(sys, *coord, [](const cluster_status& now) {
    return now.alive[2] && now.experts_per_node[2] > 0;
  });
  INFO("n3's log:\n" << net::log_tail(pc.nodes[2].log));
  CHECK(back);
  pc.stop();
}

TEST_CASE("kill -9 of the head with [cluster] state_dir: restarted, it resumes the epoch, its "
          "experts (hot-added ones too) and their outputs",
          "[mesh][processes][failure]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_head_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  const auto state = dir / "state";
  process_cluster pc{dir, {"127.0.0.1", "127.0.0.1", "127.0.0.1"}, {},
                     "state_dir = \"" + state.string() + "\"\n"};
  std::vector<matrix> inputs;
  for (int i = 0; i < 6; ++i)
    inputs.push_back(random_input(1 + i, 12, 900 + i));
  // One request at a time: each runs alone, so its bytes repeat exactly in the same epoch.
  auto answers = [&](caf::actor_system& sys, const coordinator_actor& coord) {
    caf::scoped_actor self{sys};
    std::vector<std::string> out;
    for (auto& x : inputs)
      self->request(coord, std::chrono::seconds(10), infer_atom::value, request_of(x))
        .receive([&](const infer_result& r) { out.push_back(r.output.bytes); },
                 [&](const caf::error& e) { FAIL(describe(e)); });
    return out;
  };
  auto model_of = [](caf::actor_system& sys, const coordinator_actor& coord, std::uint64_t epoch) {
    caf::scoped_actor self{sys};
    std::string bytes;
    self->request(coord, std::chrono::seconds(10), model_atom::value, epoch)
      .receive([&](const std::string& b) { bytes = b; },
               [&](const caf::error& e) { FAIL(describe(e)); });
    return bytes;
  };
  cluster_status before;
  std::vector<std::string> outputs;
  std::string model_bytes;
  {
    mesh_config cfg;
    caf::actor_system sys{cfg};
    auto coord = net::connect(sys, pc.config.nodes[0].address());
    REQUIRE(coord);
    caf::scoped_actor self{sys};
    auto change = [&](auto... args) {
      std::uint64_t epoch = 0;
      self->request(*coord, std::chrono::seconds(10), args...)
        .receive([&](std::uint64_t e) { epoch = e; },
                 [&](const caf::error& e) { FAIL(describe(e)); });
      return epoch;
    };
    CHECK(change(add_expert_atom::value, std::uint32_t{2}, std::string{"n3"},
                 std::string{"clone:2.1"}) == 2);
    CHECK(change(add_expert_atom::value, std::uint32_t{0}, std::string{"n2"},
                 std::string{"zero"}) == 3);
    CHECK(change(remove_expert_atom::value, std::uint32_t{1}, std::uint32_t{1}) == 4);
    auto s = net::status(sys, *coord);
    REQUIRE(s);
    before = *s;
    outputs = answers(sys, *coord);
    model_bytes = model_of(sys, *coord, 4);
  }
  REQUIRE(before.epoch == 4);
  CHECK(std::count(before.experts.begin(), before.experts.end(), "2.4@n3") == 1);
  CHECK(std::count(before.experts.begin(), before.experts.end(), "0.5@n2") == 1);
  CHECK(std::none_of(before.experts.begin(), before.experts.end(),
                     [](auto& e) { return e.starts_with("1.1@"); }));
  CHECK(fs::exists(state / "registry.json"));
  CHECK(fs::exists(state / "epoch-4.ckpt"));

  // The head goes at once; n2 and n3 stay, with the experts it placed there.
  ::kill(pc.nodes[0].pid, SIGKILL);
  ::waitpid(pc.nodes[0].pid, nullptr, 0);
  auto head_only = pc.config;
  head_only.nodes.resize(1);
  auto restarted = net::start_nodes(head_only, (dir / "cluster.toml").string(), eoe_binary(), dir,
                                    {}, true);
  REQUIRE(restarted.size() == 1);
  pc.nodes[0] = restarted[0];
  const auto err = net::wait_cluster_ready(pc.config, pc.nodes, std::chrono::seconds(60));
  REQUIRE(err.empty());

  mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, pc.config.nodes[0].address());
  REQUIRE(coord);
  auto s = net::status(sys, *coord);
  REQUIRE(s);
  CHECK(s->epoch == before.epoch);
  CHECK(s->experts == before.experts);
  CHECK(s->experts_per_node == before.experts_per_node);
  CHECK(s->alive == std::vector<bool>{true, true, true});
  CHECK_THAT(s->registry, Catch::Contains((state / "registry.json").string())
                            && Catch::Contains("resumed epoch 4"));
  CHECK(model_of(sys, *coord, 4) == model_bytes);
  CHECK(answers(sys, *coord) == outputs);
  // And they are the reference forward's over the resumed model.
  auto resumed = experts::parse_checkpoint(std::vector<char>(model_bytes.begin(), model_bytes.end()),
                                           "epoch 4");
  REQUIRE(resumed.has_value());
  {
    caf::scoped_actor self{sys};
    self->request(*coord, std::chrono::seconds(10), infer_atom::value, request_of(inputs[3]))
      .receive([&](const infer_result& r) { CHECK(compare(*resumed, inputs[3], r) <= 1e-6); },
               [&](const caf::error& e) { FAIL(describe(e)); });
    // The next hot-added expert takes the next stable id of its layer, in the next epoch.
    self->request(*coord, std::chrono::seconds(10), add_expert_atom::value, std::uint32_t{2},
                  std::string{"n1"}, std::string{"zero"})
      .receive([&](std::uint64_t e) { CHECK(e == 5); },
               [&](const caf::error& e) { FAIL(describe(e)); });
  }
  s = net::status(sys, *coord);
  REQUIRE(s);
  CHECK(std::count(s->experts.begin(), s->experts.end(), "2.5@n1") == 1);
  CHECK(pc.stop() == 0);
  // A damaged registry stops the head with the field at fault, and how to start afresh.
  std::ofstream{state / "registry.json"} << "{\"format\": \"eoe-registry\", \"version\": 1}";
  const auto [code, log] = run_eoe("node --cluster " + (dir / "cluster.toml").string() + " --name n1");
  CHECK(code == 1);
  CHECK_THAT(log, Catch::Contains("eoe node n1: " + (state / "registry.json").string()
                                  + ": epoch: missing (expected an unsigned integer) (remove "
                                  + (state / "registry.json").string()
                                  + " to start afresh from the checkpoint)"));
}

TEST_CASE("a live node fed garbage, truncated and wrong-epoch frames and a stranger's orders "
          "refuses each and answers exactly",
          "[mesh][processes][robustness]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_bad_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  process_cluster pc{dir, {"127.0.0.1", "127.0.0.1", "127.0.0.1"}};
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, pc.config.nodes[0].address());
  REQUIRE(coord);
  caf::scoped_actor self{sys};
  std::uint64_t seed = 500;
  auto answers_exactly = [&] {
    double worst = 0;
    for (int i = 0; i < 4; ++i) {
      const auto x = random_input(1 + i, 12, ++seed);
      self->request(*coord, std::chrono::seconds(10), infer_atom::value, request_of(x))
        .receive([&](const infer_result& r) { worst = std::max(worst, compare(*m, x, r)); },
                 [&](const caf::error& e) { FAIL(describe(e)); });
    }
    return worst <= 1e-6;
  };
  REQUIRE(answers_exactly());
  std::uint64_t epoch = 0;
  if (auto s = net::status(sys, *coord))
    epoch = s->epoch;
  const auto& victim = pc.nodes[1];
  auto log_of = [&] {
    std::ifstream in{victim.log};
    return std::string{std::istreambuf_iterator<char>{in}, {}};
  };
  const auto log = log_of();
  const auto at = log.find(", data plane on ");
  REQUIRE(at != std::string::npos);
  const auto data = log.substr(at + 16, log.find_first_of(" \n", at + 16) - at - 16);
  INFO("n2's data plane at " << data);

  // CAF's port: bytes that are not BASP, and a handshake cut short.
  {
    test::raw_socket garbage{pc.config.nodes[1].address()};
    CHECK(garbage.send(std::string(4096, '\xa5')));
    garbage.finish();
    CHECK(garbage.wait_closed());
    test::raw_socket cut{pc.config.nodes[1].address()};
    CHECK(cut.send(std::string{"\x00\x00\x00\x2a\x01", 5}));
    cut.finish();
    CHECK(cut.wait_closed());
  }
  // The data plane: garbage, a frame cut short, and whole frames of an epoch it never had.
  contribution c;
  c.request = 424242;
  c.epoch = epoch + 1000;
  c.to_layer = 1;
  c.sender = 0;
  c.sender_node = "n1";
  c.deadline_ms = 1000;
  c.rows = pack(std::vector<std::int32_t>{0});
  c.scores = pack(std::vector<float>{1.0f});
  c.y = to_wire(matrix::Constant(1, 16, 0.5f));
  const auto frame = test::wire_frame("n2", c);
  {
    test::raw_socket garbage{data};
    CHECK(garbage.send(std::string(64, '\xff')));
    CHECK(garbage.wait_closed());
    test::raw_socket cut{data};
    CHECK(cut.send(frame.substr(0, frame.size() / 2)));
    cut.finish();
    CHECK(cut.wait_closed());
    test::raw_socket stale{data};
    CHECK(stale.send(frame));
    c.epoch = 0;
    c.to_layer = 99;
    CHECK(stale.send(test::wire_frame("n2", c)));
  }
  // A stranger's CAF messages to its node agent: refused, or without effect.
  auto agent = net::remote_actor<node_agent_actor>(sys, "127.0.0.1",
                                                   pc.config.nodes[1].port, std::chrono::seconds(10));
  REQUIRE(agent);
  spawn_order order;
  order.node = "n2";
  order.checkpoint = checkpoint();
  order.experts = {{0, 1}};
  self->request(*agent, std::chrono::seconds(10), spawn_atom::value, order)
    .receive([&](const spawned_node&) { FAIL("a stranger's spawn order was obeyed"); },
             [&](const caf::error& e) {
               CHECK(describe(e) == "unauthorized: node n2 takes spawn orders from its head only, "
                                    "which is alive");
             });
  context_spec spec;
  spec.heads = 0;
  self->request(*agent, std::chrono::seconds(10), create_atom::value, spec, std::uint64_t{0},
                std::uint64_t{100})
    .receive([&](const shard_actor&) { FAIL("a shard of 0 heads was made"); },
             [&](const caf::error& e) {
               CHECK(describe(e) == "bad_request: node n2: context shard of 100 positions: kv_shard: "
                                    "heads, head_dim and block_size must be >= 1, begin and "
                                    "capacity >= 0");
             });
  spec.heads = 1;
  self->request(*agent, std::chrono::seconds(10), create_atom::value, spec, std::uint64_t{0},
                std::uint64_t{1} << 44)
    .receive([&](const shard_actor&) { FAIL("a shard of 2^44 positions was made"); },
             [&](const caf::error& e) {
               CHECK_THAT(describe(e), Catch::StartsWith("bad_request: node n2: context shard of "
                                                         "17592186044416 positions: "));
             });
  for (std::uint32_t id = 0; id < 5; ++id) // n2's experts stay
    self->send(*agent, retire_atom::value, std::uint32_t{0}, id);
  self->send(*agent, fence_atom::value, std::string{"a stranger says so"});

  // n2 is up, in the same epoch, and its experts answer as before.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_FALSE(ended(victim.pid));
  auto s = net::status(sys, *coord);
  REQUIRE(s);
  CHECK(s->epoch == epoch);
  CHECK(s->alive == std::vector<bool>{true, true, true});
  CHECK(answers_exactly());
  const auto after = log_of();
  INFO("n2's log:\n" << after);
  CHECK_THAT(after, Catch::Contains("relay n2: a message of unknown epoch "
                                    + std::to_string(epoch + 1000)));
  CHECK_THAT(after, !Catch::Contains("the head declared this node lost"));
  CHECK(pc.stop() == 0);
}

TEST_CASE("3 nodes in separate network namespaces joined by veth pairs", "[mesh][netns]") {
  if (!can_use_netns()) {
    WARN("SKIPPED: needs root and `ip netns` (iproute2)");
    return;
  }
  const net::netns_hosts hosts{3}; // removed at the end of the case, however it ends
  if (!hosts.error().empty()) {
    WARN("SKIPPED: " << hosts.error());
    return;
  }
  const auto dir = fs::temp_directory_path() / ("eoe_test_netns_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  std::vector<std::vector<std::string>> prefix;
  for (size_t i = 0; i < hosts.names().size(); ++i)
    prefix.push_back(hosts.prefix(i));
  process_cluster pc{dir, hosts.hosts(), prefix};
  exercise(pc.config);
  // Host n3's node killed -9 and started again in its namespace (by its unit on a real host):
  // the head takes it back at its address with its experts, and the answers equal the
  // reference again.
  {
    mesh_config cfg;
    caf::actor_system sys{cfg};
    auto coord = net::connect(sys, pc.config.nodes[0].address());
    REQUIRE(coord);
    const auto before = net::status(sys, *coord);
    REQUIRE(before);
    ::kill(pc.nodes[2].pid, SIGKILL);
    pc.restart(2);
    const auto back = status_when(sys, *coord, [&](const cluster_status& now) {
      return now.alive[2] && now.epoch >= before->epoch + 2; // lost, then back
    });
    INFO("n3's log:\n" << net::log_tail(pc.nodes[2].log));
    REQUIRE(back);
    CHECK(back->experts == before->experts);
  }
  exercise(pc.config, false);
  CHECK(pc.stop() == 0);
}

TEST_CASE("eoe up starts a node of another host over ssh, waits for a node its unit starts, and eoe down ends them", "[mesh][netns][ssh]") {
  if (!can_use_netns() || !fs::exists("/usr/sbin/sshd") || std::system("command -v ssh-keygen > /dev/null") != 0) {
    WARN("SKIPPED: needs root, `ip netns` and openssh-server (apt-get install openssh-server)");
    return;
  }
  const net::netns_hosts hosts{3}; // n3's "host" is the third namespace; n1 and n2 run here
  if (!hosts.error().empty()) {
    WARN("SKIPPED: " << hosts.error());
    return;
  }
  const auto dir = fs::temp_directory_path() / ("eoe_test_ssh_" + std::to_string(getpid()));
  const scratch_dir scratch{dir};
  // Where `eoe up` keeps its pids and logs, and where it copies the cluster file over ssh (the
  // same machine here): removed at the end, their folders too when this test made them.
  const auto up_root = fs::temp_directory_path() / ("eoe-" + std::to_string(getuid()));
  const auto up_dir = up_root / "test3";
  const scratch_dir up_scratch{fs::exists(up_root) ? up_dir : up_root};
  const auto remote_root = fs::path{std::getenv("HOME") ? std::getenv("HOME") : "/root"} / ".eoe";
  const scratch_dir remote_scratch{fs::exists(remote_root) ? remote_root / "cluster-n3.toml"
                                                           : remote_root};
  fs::create_directories(dir);
  // A throwaway sshd inside n3's namespace: its own host key, one authorized key.
  const auto d = dir.string();
  REQUIRE(std::system(("ssh-keygen -q -t ed25519 -N '' -f " + d + "/key && ssh-keygen -q -t "
                       "ed25519 -N '' -f " + d + "/hostkey && cp " + d + "/key.pub " + d
                       + "/authorized_keys && mkdir -p /run/sshd").c_str())
          == 0);
  const int ssh_port = base_port() + 7;
  {
    std::ofstream cfg{dir / "sshd_config"};
    cfg << "ListenAddress " << hosts.hosts()[2] << ":" << ssh_port << "\nHostKey " << d
        << "/hostkey\nAuthorizedKeysFile " << d << "/authorized_keys\nPermitRootLogin "
        << "prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        << "StrictModes no\nUsePAM no\nPidFile " << d << "/sshd.pid\n";
  }
  auto sshd = net::start_process("sshd", {"ip", "netns", "exec", hosts.names()[2], "/usr/sbin/sshd",
                                          "-D", "-e", "-f", d + "/sshd_config"},
                                 dir / "sshd.log", true);
  struct stop_sshd {
    pid_t pid;
    ~stop_sshd() {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  } stop{sshd.pid};
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto file = write_cluster(
    dir, {hosts.root_ip(), hosts.root_ip(), hosts.hosts()[2]},
    "ssh_command = \"ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    " -o LogLevel=ERROR -i " + d + "/key -p " + std::to_string(ssh_port) + "\"\nremote_eoe = \""
      + eoe_binary() + "\"");
  std::ofstream{file, std::ios::app} << "ssh = \"root@" << hosts.hosts()[2] << "\"\n"; // n3's
  { // n2 is started by its own unit (here: by the test); eoe up waits for it
    std::ifstream in{file};
    std::string text{std::istreambuf_iterator<char>{in}, {}};
    text.replace(text.find("name = \"n2\"\n"), 12, "name = \"n2\"\nunit = true\n");
    std::ofstream{file} << text;
  }
  auto config = net::load_cluster_config(file);
  REQUIRE(config.has_value());
  REQUIRE(config->nodes[2].ssh == "root@" + hosts.hosts()[2]);
  REQUIRE(config->nodes[1].unit);
  auto n2 = net::start_process("n2", {eoe_binary(), "node", "--cluster", file, "--name", "n2"},
                               dir / "n2.log", true);
  struct reap_n2 {
    pid_t pid;
    ~reap_n2() {
      if (::waitpid(pid, nullptr, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reap{n2.pid};
  const auto [up_rc, up_out] = run_eoe("up " + file);
  INFO("eoe up: " << up_out << "\nsshd: " << net::log_tail(dir / "sshd.log"));
  REQUIRE(up_rc == 0);
  CHECK_THAT(up_out, Catch::Contains("cluster 'test3' ready"));
  // n3 runs in the third namespace, started through sshd there: its log came back over ssh.
  CHECK_THAT(net::log_tail(up_dir / "n3.log", 50), Catch::Contains(hosts.hosts()[2]));
  exercise(*config);
  const auto [down_rc, down_out] = run_eoe("down " + file);
  CHECK(down_rc == 0);
  CHECK_THAT(down_out, Catch::Contains("cluster 'test3' down (2 node process(es))")); // n1, n3
  // n2, its unit's, ended too: the head's shutdown reaches every node.
  bool n2_ended = false;
  for (int i = 0; i < 100 && !n2_ended; ++i) {
    n2_ended = ::waitpid(n2.pid, nullptr, WNOHANG) == n2.pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(n2_ended);
}

TEST_CASE("traces of 3 processes line up on the head's clock, and stream live to a follower",
          "[mesh][trace]") {
  const auto dir = fs::temp_directory_path() / ("eoe_trace3_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const scratch_dir scratch{dir}; // however the case ends
  const auto collector = "127.0.0.1:" + std::to_string(base_port() + 9);
  std::ostringstream live;
  std::uint64_t shown = 0;
  // When a check below ends the case, joined after the nodes are gone (the head's collector
  // closes the follower): a joinable std::thread would terminate the process, /tmp left as is.
  std::thread follower;
  const struct joined {
    std::thread& t;
    ~joined() {
      if (t.joinable())
        t.join();
    }
  } join_follower{follower};
  // Node n2's clock runs 300 ms ahead; the offset measured at start-up takes it out.
  process_cluster cluster{dir,
                          {"127.0.0.1", "127.0.0.1", "127.0.0.1"},
                          {{}, {"env", "EOE_CLOCK_SKEW_MS=300"}, {}},
                          "\n[trace]\ndir = \"" + (dir / "trace").string() + "\"\ncollector = \""
                            + collector + "\"\n"};
  follower = std::thread([&] { shown = trace_tool::follow(collector, live, 40); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300)); // the follower is registered
  mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coord = net::connect(sys, cluster.config.nodes[0].address());
  REQUIRE(coord);
  auto req = request_of(random_input(5, 12, 77));
  req.trace = true;
  auto r = net::infer(sys, *coord, req, std::chrono::seconds(20));
  REQUIRE(r);
  CHECK(r->trace_id != 0);
  follower.join();
  CHECK(shown == 40);
  const auto text = live.str();
  CHECK(std::count(text.begin(), text.end(), '\n') == 40);
  CHECK(text.find("does not parse") == std::string::npos);
  CHECK(cluster.stop() == 0);

  const auto log = trace_tool::load_trace({dir / "trace"});
  const auto m = trace_tool::match_messages(log);
  CHECK(m.unmatched_sends.empty());
  CHECK(m.unmatched_receives.empty());
  std::set<std::string> nodes;
  size_t from_n2 = 0, to_n2 = 0;
  for (auto& msg : m.messages) {
    const auto& s = log.events[msg.send];
    const auto& rcv = log.events[msg.receive];
    nodes.insert(s.node);
    from_n2 += s.node == "n2" && rcv.node != "n2";
    to_n2 += s.node != "n2" && rcv.node == "n2";
    INFO(s.node << " -> " << rcv.node << ": " << msg.latency_ns << " ns");
    // Unaligned, a message into n2 would seem to take 300 ms and one out of it -300 ms; the
    // alignment is as good as half the fastest loopback round trip.
    CHECK(msg.latency_ns > -1'000'000);
    CHECK(msg.latency_ns < 100'000'000);
  }
  CHECK(nodes.size() == 3);
  CHECK(from_n2 > 0);
  CHECK(to_n2 > 0);
}

TEST_CASE("a language model served by 3 node processes: the cluster's logits equal the "
          "in-process decoder's over 200 tokens, and so does the text",
          "[lm][processes]") {
  const auto dir = fs::temp_directory_path() / ("eoe_lm3_" + std::to_string(getpid()));
  const scratch_dir scratch{dir}; // however the case ends
  fs::create_directories(dir);
  // Two expert layers between attention layers: outputs cross to the head's composer and
  // its starts cross back, over the data plane.
  auto c = experts::parse_model_config(R"(
[model]
kind = "lm"
vocab = 256
context = 48
dim = 32
seed = 5
[[layer]]
kind = "attention"
heads = 2
[[layer]]
kind = "eoe"
experts = 4
hidden = 32
rank = 8
mode = "topk"
k = 2
[[layer]]
kind = "attention"
heads = 4
[[layer]]
kind = "router"
experts = 3
hidden = 16
k = 1
[[layer]]
kind = "eoe"
experts = 3
hidden = 16
rank = 4
mode = "topk"
k = 2
)", "lm3_test");
  REQUIRE(c.has_value());
  const auto m = test::random_model(*c, 17);
  const auto ckpt = (dir / "lm.ckpt").string();
  REQUIRE(experts::save_checkpoint(m, ckpt).has_value());
  const int base = base_port();
  {
    std::ofstream out{dir / "cluster.toml"};
    out << "[cluster]\nname = \"lm3\"\ncheckpoint = \"" << ckpt
        << "\"\nhead = \"n1\"\nkv_shard_positions = 8\n";
    for (int i = 0; i < 3; ++i)
      out << "\n[[node]]\nname = \"n" << i + 1 << "\"\nhost = \"127.0.0.1\"\nport = "
          << base + i << "\n";
  }
  test::node_processes cluster{(dir / "cluster.toml").string(), dir};
  const std::string args = "--prompt 'The ' --tokens 200 --seed 3 --top-p 0.9";
  const auto [rc, out] = run_eoe("generate --connect 127.0.0.1:" + std::to_string(base)
                                 + " --reference " + args);
  INFO(out);
  REQUIRE(rc == 0);
  const auto at = out.find("max |cluster - reference| logits = ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(out.substr(at + 36)) <= 1e-5);
  const auto over = out.find(" over ", at);
  REQUIRE(over != std::string::npos);
  CHECK(std::stoi(out.substr(over + 6)) >= 200); // every generated position compared
  // The same seed in-process and from the cluster: the same text.
  const auto local = run_eoe("generate --checkpoint " + ckpt + " --shard-capacity 8 " + args,
                             "", "2>/dev/null");
  const auto remote = run_eoe("generate --connect 127.0.0.1:" + std::to_string(base) + " " + args,
                              "", "2>/dev/null");
  CHECK(local.first == 0);
  CHECK(remote.first == 0);
  CHECK(local.second.size() >= 204);
  CHECK(remote.second == local.second);
  CHECK(cluster.stop() == 0);
}
