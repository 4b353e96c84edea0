// Cluster files: the scheduling policy of the nodes' actor systems ([cluster] scheduler) and
// how long an unfed language-model session lives (session_idle_s), their
// defaults and errors, each naming file, line, column and key.

#include "net/cluster_config.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace eoe;

namespace {

std::string error_of(const std::string& text) {
  auto c = net::parse_cluster_config(text, "c.toml");
  return c ? std::string{"(no error)"} : c.error().message;
}

const std::string one_node = "[[node]]\nname = \"n1\"\nport = 4401\n";

} // namespace

TEST_CASE("[cluster] scheduler: sharing by default, stealing on request, nothing else",
          "[cluster_config]") {
  auto plain = net::parse_cluster_config(one_node, "c.toml");
  REQUIRE(plain);
  CHECK(plain->scheduler == actors::scheduler_policy::sharing);
  auto stealing = net::parse_cluster_config("[cluster]\nscheduler = \"stealing\"\n" + one_node,
                                            "c.toml");
  REQUIRE(stealing);
  CHECK(stealing->scheduler == actors::scheduler_policy::stealing);
  auto sharing = net::parse_cluster_config("[cluster]\nscheduler = \"sharing\"\n" + one_node,
                                           "c.toml");
  REQUIRE(sharing);
  CHECK(sharing->scheduler == actors::scheduler_policy::sharing);
  CHECK_THAT(error_of("[cluster]\nscheduler = \"fifo\"\n" + one_node),
             Catch::Contains("c.toml:2:13: cluster.scheduler: expected \"sharing\" or "
                             "\"stealing\", got \"fifo\""));
  CHECK_THAT(error_of("[cluster]\nscheduler = 3\n" + one_node),
             Catch::Contains("c.toml:2:13: cluster.scheduler: expected a string, got an "
                             "integer (3)"));
}

TEST_CASE("[cluster] session_idle_s: 600 by default, 0 for never, no negatives",
          "[cluster_config]") {
  auto plain = net::parse_cluster_config(one_node, "c.toml");
  REQUIRE(plain);
  CHECK(plain->session_idle_s == 600);
  auto never = net::parse_cluster_config("[cluster]\nsession_idle_s = 0\n" + one_node, "c.toml");
  REQUIRE(never);
  CHECK(never->session_idle_s == 0);
  CHECK_THAT(error_of("[cluster]\nsession_idle_s = -5\n" + one_node),
             Catch::Contains("c.toml:2:18: cluster.session_idle_s: expected an integer in "
                             "0..2592000 (0: never), got an integer (-5)"));
}
