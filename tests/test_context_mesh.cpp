// Long contexts through actors: a context grows by spawning shard actors on the nodes as it
// fills; full, two-round global top-k and one-round budget queries equal the math; many
// queries on their own contexts at once.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "context_model.hpp"
#include "local_cluster_fixture.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::test;

namespace {

struct cluster : local_cluster {
  context_actor contexts = local_cluster::contexts();

  cluster() : local_cluster("", 3) {
    // nop
  }
};

context::partial ask(caf::scoped_actor& self, const context_actor& ctx, std::uint64_t id,
                     attention_query q) {
  context::partial out;
  self->request(ctx, std::chrono::seconds(30), query_atom::value, id, std::move(q))
    .receive([&](const wire_partial& w) { out = from_wire(w); },
             [&](const caf::error& e) { FAIL(describe(e)); });
  return out;
}

} // namespace

TEST_CASE("a context through shard actors equals the math in every mode", "[context][mesh]") {
  cluster cl;
  caf::scoped_actor self{cl.sys};
  const test_context tc;
  const auto id = tc.fill(self, cl.contexts);
  const auto shards = tc.shards();
  REQUIRE(shards.size() == 10);
  const std::vector<std::int64_t> pos{0, 99, 100, 101, 555, 999};
  const auto q = queries(static_cast<Eigen::Index>(pos.size()), 7);
  for (std::uint8_t mode : {0, 1, 2}) {
    INFO("mode " << int(mode));
    const auto want = expected(shards, q, pos, mode, 5, 0.25);
    const auto got = ask(self, cl.contexts, id, query_of(q, pos, mode, 5, 0.25));
    REQUIRE(got.out.rows() == want.out.rows());
    CHECK((got.out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
    for (size_t r = 0; r < want.max.size(); ++r)
      CHECK(got.max[r] == Approx(want.max[r]).margin(1e-5));
  }
}

TEST_CASE("a lost node hosts no new shard: the context grows on the others, equal to the math, "
          "and the node taken back hosts again",
          "[context][mesh]") {
  cluster cl;
  caf::scoped_actor self{cl.sys};
  auto held = [&] {
    std::vector<std::uint64_t> out;
    self->request(cl.contexts, std::chrono::seconds(5), stats_atom::value)
      .receive([&](std::vector<std::uint64_t>& h) { out = std::move(h); },
               [&](const caf::error& e) { FAIL(describe(e)); });
    return out;
  };
  // The coordinator says so when it loses node 1.
  self->send(cl.contexts, join_atom::value, std::uint32_t{1}, node_agent_actor{});
  const test_context tc;
  const auto id = tc.fill(self, cl.contexts);
  const auto lost = held();
  REQUIRE(lost.size() == 3);
  CHECK(lost[1] == 0);
  CHECK(lost[0] > 0);
  CHECK(lost[2] > 0);
  const std::vector<std::int64_t> pos{0, 555, 999};
  const auto q = queries(static_cast<Eigen::Index>(pos.size()), 7);
  const auto want = expected(tc.shards(), q, pos, 0, 5, 0.25);
  const auto got = ask(self, cl.contexts, id, query_of(q, pos, 0, 5, 0.25));
  CHECK((got.out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
  // Taken back (a fresh process's agent in its place): a new context puts shards there too.
  auto fresh = cl.sys.spawn(node_agent_behavior, std::string{"n2"});
  self->send(cl.contexts, join_atom::value, std::uint32_t{1}, fresh);
  tc.fill(self, cl.contexts);
  CHECK(held()[1] > 0);
  self->send_exit(fresh, caf::exit_reason::user_shutdown);
}

TEST_CASE("many queries on their own contexts at once", "[context][mesh]") {
  cluster cl;
  caf::scoped_actor self{cl.sys};
  const test_context tc;
  const auto shards = tc.shards();
  std::vector<std::uint64_t> ids;
  for (int c = 0; c < 4; ++c)
    ids.push_back(tc.fill(self, cl.contexts));
  std::vector<decltype(self->request(cl.contexts, caf::infinite, query_atom::value, std::uint64_t{0},
                                     attention_query{}))>
    pending;
  std::vector<std::pair<matrix, std::vector<std::int64_t>>> asked;
  for (int i = 0; i < 60; ++i) {
    std::vector<std::int64_t> pos{static_cast<std::int64_t>((i * 97) % 1000)};
    asked.emplace_back(queries(1, 100 + i), pos);
    pending.push_back(self->request(cl.contexts, std::chrono::seconds(30), query_atom::value,
                                    ids[i % ids.size()],
                                    query_of(asked.back().first, pos, static_cast<std::uint8_t>(i % 3), 4, 0.2)));
  }
  for (size_t i = 0; i < pending.size(); ++i)
    pending[i].receive(
      [&](const wire_partial& w) {
        const auto want = expected(shards, asked[i].first, asked[i].second,
                                   static_cast<std::uint8_t>(i % 3), 4, 0.2);
        CHECK((from_wire(w).out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
      },
      [&](const caf::error& e) { FAIL(describe(e)); });
}

TEST_CASE("bad context requests are named", "[context][mesh]") {
  cluster cl;
  caf::scoped_actor self{cl.sys};
  self->request(cl.contexts, std::chrono::seconds(5), query_atom::value, std::uint64_t{99},
                query_of(queries(1, 1), {0}, 0))
    .receive([](const wire_partial&) { FAIL("answered"); },
             [](const caf::error& e) { CHECK(describe(e) == "bad_request: context 99 does not exist"); });
  std::uint64_t id = 0;
  self->request(cl.contexts, std::chrono::seconds(5), create_atom::value, context_spec{2, 16, 8, 50})
    .receive([&](std::uint64_t i) { id = i; }, [](const caf::error& e) { FAIL(describe(e)); });
  heads_tensor one{to_wire(matrix::Zero(3, 16))};
  self->request(cl.contexts, std::chrono::seconds(5), append_atom::value, id, one, one)
    .receive([](std::uint64_t) { FAIL("accepted"); },
             [](const caf::error& e) {
               CHECK_THAT(describe(e), Catch::Contains("append one key and one value tensor per head (2)"));
             });
  heads_tensor narrow{to_wire(matrix::Zero(3, 15)), to_wire(matrix::Zero(3, 15))};
  self->request(cl.contexts, std::chrono::seconds(5), append_atom::value, id, narrow, narrow)
    .receive([](std::uint64_t) { FAIL("accepted"); },
             [](const caf::error& e) { CHECK_THAT(describe(e), Catch::Contains("head 0 needs (3, 16)")); });
}

TEST_CASE("a context dropped while an append is growing it: the append fails naming it, the "
          "context composer goes on",
          "[context][mesh]") {
  cluster cl;
  caf::scoped_actor self{cl.sys};
  const test_context tc;
  for (int round = 0; round < 5; ++round) {
    std::uint64_t id = 0;
    self->request(cl.contexts, std::chrono::seconds(5), create_atom::value, tc.spec)
      .receive([&](std::uint64_t i) { id = i; }, [](const caf::error& e) { FAIL(describe(e)); });
    // A whole context at once (10 shards to spawn), and at once its drop: the shards' replies
    // come after the drop.
    heads_tensor k{to_wire(tc.k)}, v{to_wire(tc.v)};
    auto append = self->request(cl.contexts, std::chrono::seconds(30), append_atom::value, id, k, v);
    self->request(cl.contexts, std::chrono::seconds(5), drop_atom::value, id)
      .receive([](ok_atom) {}, [](const caf::error& e) { FAIL(describe(e)); });
    append.receive([](std::uint64_t) {}, // it may have finished first
                   [&](const caf::error& e) {
                     CHECK(describe(e) == "bad_request: context " + std::to_string(id)
                                            + " does not exist");
                   });
  }
  // Still serving: a fresh context fills and answers as the math does.
  const auto id = tc.fill(self, cl.contexts);
  const auto want = expected(tc.shards(), queries(1, 3), {999}, 0, 5, 0.25);
  const auto got = ask(self, cl.contexts, id, query_of(queries(1, 3), {999}, 0, 5, 0.25));
  CHECK((got.out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
}
