// Cluster files: the scheduling policy of the nodes' actor systems ([cluster] scheduler) and
// how long an unfed language-model session lives (session_idle_s), where context shards go
// (kv_placement), their defaults and errors, each naming file, line, column and key.

#include "actors/mesh_config.hpp"
#include "net/cluster_config.hpp"

#include <caf/actor_system.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <thread>

#include <string>

using namespace eoe;

namespace {

std::string error_of(const std::string& text) {
  auto c = net::parse_cluster_config(text, "c.toml");
  return c ? std::string{"(no error)"} : c.error().message;
}

const std::string one_node = "[[node]]\nname = \"n1\"\nport = 4401\n";

/// The cluster file of one node with these [cluster] keys ("": no [cluster] table), which
/// must parse.
net::cluster_config with_cluster(const std::string& keys) {
  auto c = net::parse_cluster_config(keys.empty() ? one_node : "[cluster]\n" + keys + one_node,
                                     "c.toml");
  if (!c)
    FAIL(c.error().message);
  return *c;
}

/// The error of the cluster file of one node with these [cluster] keys.
std::string cluster_error(const std::string& keys) {
  return error_of("[cluster]\n" + keys + one_node);
}

} // namespace

TEST_CASE("[cluster] scheduler: sharing by default, stealing on request, nothing else",
          "[cluster_config]") {
  CHECK(with_cluster("").scheduler == actors::scheduler_policy::sharing);
  CHECK(with_cluster("scheduler = \"stealing\"\n").scheduler == actors::scheduler_policy::stealing);
  CHECK(with_cluster("scheduler = \"sharing\"\n").scheduler == actors::scheduler_policy::sharing);
  CHECK_THAT(cluster_error("scheduler = \"fifo\"\n"),
             Catch::Contains("c.toml:2:13: cluster.scheduler: expected \"sharing\" or "
                             "\"stealing\", got \"fifo\""));
  CHECK_THAT(cluster_error("scheduler = 3\n"),
             Catch::Contains("c.toml:2:13: cluster.scheduler: expected a string, got an "
                             "integer (3)"));
}

TEST_CASE("[cluster] session_idle_s: 600 by default, 0 for never, no negatives",
          "[cluster_config]") {
  CHECK(with_cluster("").session_idle_s == 600);
  CHECK(with_cluster("session_idle_s = 0\n").session_idle_s == 0);
  CHECK_THAT(cluster_error("session_idle_s = -5\n"),
             Catch::Contains("c.toml:2:18: cluster.session_idle_s: expected an integer in "
                             "0..2592000 (0: never), got an integer (-5)"));
}

TEST_CASE("[cluster] max_batch_rows and batches_in_flight: defaults, 0 for no batching, "
          "bounds named",
          "[cluster_config]") {
  const auto plain = with_cluster("");
  CHECK(plain.max_batch_rows == 4096);
  CHECK(plain.batches_in_flight == 1);
  const auto off = with_cluster("max_batch_rows = 0\nbatches_in_flight = 3\n");
  CHECK(off.max_batch_rows == 0);
  CHECK(off.batches_in_flight == 3);
  CHECK_THAT(cluster_error("max_batch_rows = -1\n"),
             Catch::Contains("c.toml:2:18: cluster.max_batch_rows: expected an integer in "
                             "0..1048576 (0: no batching), got an integer (-1)"));
  CHECK_THAT(cluster_error("batches_in_flight = 0\n"),
             Catch::Contains("c.toml:2:21: cluster.batches_in_flight: expected an integer in 1..64, "
                             "got an integer (0)"));
}

TEST_CASE("a node's name: letters, digits, '.', '_' and '-', for it names a file", "[cluster_config]") {
  const std::string want = ": node[0].name: expected 1..64 letters, digits, '.', '_' or '-', not "
                           "starting with '.' (it names the node's trace file), got ";
  CHECK(error_of("[[node]]\nname = \"../n1\"\nport = 4401\n") == "c.toml:2:8" + want + "\"../n1\"");
  CHECK(error_of("[[node]]\nname = \"n/1\"\nport = 4401\n") == "c.toml:2:8" + want + "\"n/1\"");
  CHECK(error_of("[[node]]\nname = \"\"\nport = 4401\n") == "c.toml:2:8" + want + "\"\"");
  CHECK(error_of("[[node]]\nname = \"n\\u0000\\u001b\"\nport = 4401\n")
        == "c.toml:2:8" + want + "\"n\\x00\\x1B\"");
  CHECK(error_of("[[node]]\nname = \"" + std::string(65, 'n') + "\"\nport = 4401\n")
        == "c.toml:2:8" + want + "\"" + std::string(65, 'n') + "\"");
  auto ok = net::parse_cluster_config("[[node]]\nname = \"gpu-box_2.n1\"\nport = 4401\n", "c.toml");
  REQUIRE(ok);
  CHECK(ok->nodes.at(0).name == "gpu-box_2.n1");
}

TEST_CASE("a cluster file's bytes and strings: the byte named, values quoted safely",
          "[cluster_config]") {
  CHECK(cluster_error("name = \"c\xff\"\n")
        == "c.toml:2:10: byte 0xFF is not UTF-8 (a TOML file is UTF-8 text)");
  CHECK(cluster_error("scheduler = \"fi\\u001bfo\"\n")
        == "c.toml:2:13: cluster.scheduler: expected \"sharing\" or \"stealing\", got "
           "\"fi\\x1Bfo\"");
  const std::string huge(100000, '1');
  CHECK(error_of("[gateway]\nlisten = \"h:" + huge + "\"\n" + one_node)
        == "c.toml:2:10: gateway.listen: expected host:port with a port in [0, 65535], got \"h:"
             + std::string(78, '1') + "... (100002 bytes)\"");
  CHECK(cluster_error("head = \"n\\u001b\"\n")
        == "c.toml:2:8: cluster.head: \"n\\x1B\" is not the name of a [[node]]");
  // check_tls quotes the paths it cannot read as the file gives them.
  CHECK_THAT(error_of(one_node + "[tls]\ncertificate = \"/nonexistent/c\\u001b[2J.pem\"\n"
                      "key = \"/nonexistent/k.pem\"\nca = \"/nonexistent/ca.pem\"\n"),
             Catch::Contains("c.toml:5:15: tls.certificate: cannot read "
                             "\"/nonexistent/c\\x1B[2J.pem\": No such file or directory"));
}

TEST_CASE("[cluster] kv_placement: a context's first shard on the head by default, or spread",
          "[cluster_config]") {
  CHECK(with_cluster("").kv_placement == actors::shard_placement::head);
  CHECK(with_cluster("kv_placement = \"spread\"\n").kv_placement == actors::shard_placement::spread);
  CHECK_THAT(cluster_error("kv_placement = \"random\"\n"),
             Catch::Contains("c.toml:2:16: cluster.kv_placement: expected one of \"head\" "
                             "\"spread\""));
}

TEST_CASE("[cluster] heartbeat_ms and suspect_after_ms: 200 and 1000 by default; the limit "
          "must span two heartbeats",
          "[cluster_config]") {
  const auto plain = with_cluster("");
  CHECK(plain.heartbeat_ms == 200);
  CHECK(plain.suspect_after_ms == 1000);
  CHECK(with_cluster("heartbeat_ms = 0\n").heartbeat_ms == 0);
  CHECK(with_cluster("heartbeat_ms = 50\nsuspect_after_ms = 100\n").suspect_after_ms == 100);
  CHECK_THAT(cluster_error("heartbeat_ms = 600\n"),
             Catch::Contains("cluster.suspect_after_ms: must be at least twice heartbeat_ms "
                             "(600), got 1000"));
  CHECK_THAT(cluster_error("heartbeat_ms = -1\n"),
             Catch::Contains("cluster.heartbeat_ms: expected an integer in 0..60000 (0: off)"));
}

TEST_CASE("[cluster] worker_threads: the machine's hardware threads (at least 2) by default, "
          "as many as given",
          "[cluster_config]") {
  CHECK(with_cluster("").worker_threads == 0);
  CHECK(with_cluster("worker_threads = 3\n").worker_threads == 3);
  CHECK_THAT(cluster_error("worker_threads = 300\n"),
             Catch::Contains("cluster.worker_threads: expected an integer in 0..256 (0: the "
                             "machine's hardware threads)"));
  // What a node's actor system then runs with.
  {
    eoe::actors::mesh_config cfg;
    caf::actor_system sys{cfg};
    CHECK(sys.scheduler().num_workers()
          == std::max<size_t>(std::thread::hardware_concurrency(), 2));
  }
  eoe::actors::mesh_config cfg;
  cfg.worker_threads(3);
  caf::actor_system sys{cfg};
  CHECK(sys.scheduler().num_workers() == 3);
}

TEST_CASE("[cluster] state_dir: none by default, a folder, nothing else", "[cluster_config]") {
  CHECK(with_cluster("").state_dir.empty());
  CHECK(with_cluster("state_dir = \"/var/lib/eoe\"\n").state_dir == "/var/lib/eoe");
  CHECK_THAT(cluster_error("state_dir = true\n"),
             Catch::Contains("c.toml:2:13: cluster.state_dir: expected a string, got a "
                             "boolean (true)"));
}

TEST_CASE("a node's ssh target, [cluster] ssh_command and remote_eoe: one shell word each",
          "[cluster_config]") {
  const auto plain = with_cluster("");
  CHECK(plain.nodes[0].ssh.empty());
  CHECK(plain.ssh_command == "ssh -o BatchMode=yes");
  CHECK(plain.remote_eoe == "eoe");
  auto c = net::parse_cluster_config("[cluster]\nssh_command = \"ssh -p 2222\"\nremote_eoe = "
                                     "\"/opt/eoe/bin/eoe\"\n" + one_node + "ssh = \"ops@10.0.0.6\"\n",
                                     "c.toml");
  REQUIRE(c.has_value());
  CHECK(c->nodes[0].ssh == "ops@10.0.0.6");
  CHECK(c->ssh_command == "ssh -p 2222");
  CHECK(c->remote_eoe == "/opt/eoe/bin/eoe");
  CHECK(error_of(one_node + "ssh = \"h; rm -rf ~\"\n")
        == "c.toml:4:7: node[0].ssh: expected [user@]host of letters, digits and '@._-:', got "
           "\"h; rm -rf ~\"");
  CHECK(net::parse_cluster_config(one_node + "unit = true\n", "c.toml")->nodes[0].unit);
  CHECK(error_of(one_node + "unit = true\nssh = \"h\"\n")
        == "c.toml:4:8: node[0].unit: a node started by its unit is not started over ssh too: "
           "drop ssh or unit");
  CHECK(cluster_error("remote_eoe = \"eoe node\"\n")
        == "c.toml:2:14: cluster.remote_eoe: expected a path of letters, digits and '/._-+', got "
           "\"eoe node\"");
}
