// Cluster files: the scheduling policy of the nodes' actor systems ([cluster] scheduler), its
// default and its errors, each naming file, line, column and key.

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
