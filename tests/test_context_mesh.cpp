// Long contexts through actors: a context grows by spawning shard actors on the nodes as it
// fills; full, two-round global top-k and one-round budget queries equal the math; many
// queries on their own contexts at once.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "actors/shard_actor.hpp"
#include "actors/wire.hpp"
#include "context_model.hpp"
#include "local_cluster_fixture.hpp"
#include "random_model.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <span>

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

TEST_CASE("a node's batch of shard calls run on every core answers as one by one; calls on one "
          "shard keep their order; a bad call fails alone",
          "[context][mesh]") {
  const context_spec spec{2, 4, 4, 64};
  // Call i: rows positions [from, from + n) of shard `on[i]`, keys, values and queries seeded
  // by i and round.
  const auto make_calls = [](std::span<const std::int64_t> from, std::int64_t n, int round) {
    std::vector<shard_call> calls(from.size());
    for (size_t i = 0; i < from.size(); ++i) {
      const auto seed = static_cast<std::uint64_t>(100 * round + i);
      for (std::uint64_t h = 0; h < 2; ++h) {
        calls[i].k.push_back(to_wire(random_matrix(n, 4, seed * 8 + h)));
        calls[i].v.push_back(to_wire(random_matrix(n, 4, seed * 8 + h + 2)));
        calls[i].q.push_back(to_wire(random_matrix(n, 4, seed * 8 + h + 4)));
      }
      std::vector<std::int64_t> pos;
      for (std::int64_t p = 0; p < n; ++p)
        pos.push_back(from[i] + p);
      calls[i].positions = pack(pos);
    }
    return calls;
  };
  const auto fresh = [&](size_t n) {
    std::vector<std::shared_ptr<hosted_shard>> s;
    for (size_t i = 0; i < n; ++i)
      s.push_back(std::make_shared<hosted_shard>(spec, 0, 64));
    return s;
  };
  const auto bytes_of = [](const std::vector<attention_reply>& replies) {
    std::vector<std::string> out;
    for (const auto& r : replies) {
      std::string b = r.error;
      for (const auto& h : r.heads)
        b += h.out.bytes + h.max + h.sum;
      out.push_back(b);
    }
    return out;
  };
  constexpr auto serial = std::numeric_limits<std::int64_t>::max();

  SECTION("six shards, two rounds: parallel equals serial, byte for byte") {
    auto a = fresh(6), b = fresh(6);
    for (int round = 0; round < 2; ++round) {
      const std::vector<std::int64_t> from(6, 5 * round);
      const auto calls = make_calls(from, 5, round);
      std::vector<attention_reply> par, one;
      decode_calls(a, calls, par, 0);
      decode_calls(b, calls, one, serial);
      for (const auto& r : par)
        REQUIRE(r.error.empty());
      CHECK(bytes_of(par) == bytes_of(one));
    }
    CHECK(a[5]->shard.size() == 10);
  }
  SECTION("two calls on one shard: in order, as two batches would run them") {
    auto a = fresh(1), b = fresh(1);
    const std::vector<std::int64_t> from{0, 3};
    auto calls = make_calls(from, 3, 0);
    std::vector<std::shared_ptr<hosted_shard>> twice{a[0], a[0]};
    std::vector<attention_reply> par;
    decode_calls(twice, calls, par, 0);
    std::vector<attention_reply> first, second;
    decode_calls(b, std::span{calls}.first(1), first, serial);
    decode_calls(b, std::span{calls}.subspan(1), second, serial);
    REQUIRE(par.size() == 2);
    CHECK(bytes_of(par) == std::vector{bytes_of(first)[0], bytes_of(second)[0]});
  }
  SECTION("a call with the wrong heads fails alone, a missing shard is left to the caller") {
    auto a = fresh(3);
    const std::vector<std::int64_t> from(3, 0);
    auto calls = make_calls(from, 2, 0);
    calls[1].q.pop_back();
    std::vector<std::shared_ptr<hosted_shard>> some{a[0], a[1], nullptr};
    std::vector<attention_reply> out;
    decode_calls(some, calls, out, 0);
    CHECK(out[0].error.empty());
    CHECK(out[0].heads.size() == 2);
    CHECK(out[1].error == "shard decode: 1 query heads, the shard has 2");
    CHECK(out[1].heads.empty());
    CHECK(a[1]->shard.size() == 0); // refused before its append
    CHECK(out[2].error.empty());
    CHECK(out[2].heads.empty());
  }
}
