// The etcd client against a real etcd (Debian's etcd-server; skipped without it): keys and
// prefixes, guarded puts, leases that expire, and an election whose terms grow.

#include "net/local_etcd.hpp"
#include "node_processes.hpp"

#include <catch2/catch.hpp>

#include <thread>
#include <unistd.h>

using namespace eoe;

TEST_CASE("etcd client: keys, prefixes, guarded puts, leases and an election", "[etcd]") {
  if (!net::etcd_installed()) {
    WARN("SKIPPED: etcd is not installed (apt-get install etcd-server)");
    return;
  }
  const auto dir =
    std::filesystem::temp_directory_path() / ("eoe_test_etcd_" + std::to_string(getpid()));
  // local_etcd removes it too, but not when its constructor throws: then this does.
  const test::scratch_dir scratch{dir};
  net::local_etcd etcd{dir, test::base_port() + 6};
  REQUIRE(etcd.proc.pid > 0);
  const auto c = etcd.client();

  // Bytes of every value survive, empty ones too.
  const std::string bytes{"\x00\xff\x01 {\"json\"}\n", 13};
  REQUIRE(c.put("/eoe/t/a", bytes));
  REQUIRE(c.put("/eoe/t/b", ""));
  REQUIRE(c.put("/eoe/u", "other"));
  auto a = c.get("/eoe/t/a");
  REQUIRE(a.has_value());
  REQUIRE(a->has_value());
  CHECK((*a)->value == bytes);
  CHECK((*a)->create_revision > 0);
  auto none = c.get("/eoe/t/none");
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());
  auto listed = c.get_prefix("/eoe/t/");
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 2);
  CHECK((*listed)[0].first == "/eoe/t/a");
  CHECK((*listed)[1].first == "/eoe/t/b");
  CHECK((*listed)[1].second.value.empty());
  REQUIRE(c.erase_prefix("/eoe/t/"));
  CHECK(c.get_prefix("/eoe/t/")->empty());
  CHECK(c.get("/eoe/u").value()->value == "other");

  // A put guarded by another key's value.
  REQUIRE(c.put("/eoe/leader", "n1"));
  CHECK(c.put_if("/eoe/leader", "n1", "/eoe/registry", "r1").value());
  CHECK_FALSE(c.put_if("/eoe/leader", "n2", "/eoe/registry", "r2").value());
  CHECK(c.get("/eoe/registry").value()->value == "r1");
  REQUIRE(c.erase_prefix("/eoe/leader"));

  // The election: the first candidate wins, the second sees who holds it; when the winner's
  // lease goes, the second wins with a larger term.
  auto l1 = c.grant(1);
  auto l2 = c.grant(5);
  REQUIRE(l1.has_value());
  REQUIRE(l2.has_value());
  auto first = c.campaign("/eoe/c/leader", "n1", *l1);
  REQUIRE(first.has_value());
  CHECK(first->won);
  CHECK(first->leader.value == "n1");
  auto second = c.campaign("/eoe/c/leader", "n2", *l2);
  REQUIRE(second.has_value());
  CHECK_FALSE(second->won);
  CHECK(second->leader.value == "n1");
  CHECK(second->leader.create_revision == first->leader.create_revision);
  CHECK(c.keep_alive(*l1).value() >= 1);
  REQUIRE(c.revoke(*l1));
  CHECK(c.keep_alive(*l1).value() <= 0); // gone
  auto third = c.campaign("/eoe/c/leader", "n2", *l2);
  REQUIRE(third.has_value());
  CHECK(third->won);
  CHECK(third->leader.create_revision > first->leader.create_revision);
  // A lease nobody keeps alive expires, and its key with it.
  auto l3 = c.grant(1);
  REQUIRE(c.put("/eoe/c/ephemeral", "x", *l3));
  CHECK(c.get("/eoe/c/ephemeral").value().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  CHECK_FALSE(c.get("/eoe/c/ephemeral").value().has_value());

  // Errors name the endpoint.
  CHECK(net::etcd_client::parse("etcd://nohost").error().message
        == "registry \"etcd://nohost\": expected etcd://HOST:PORT");
  const auto gone_port = test::base_port() + 8;
  auto nobody = net::etcd_client::parse("127.0.0.1:" + std::to_string(gone_port)).value().get("/k");
  REQUIRE_FALSE(nobody.has_value());
  CHECK_THAT(nobody.error().message,
             Catch::StartsWith("etcd at 127.0.0.1:" + std::to_string(gone_port) + "/v3/kv/range: "));
}
