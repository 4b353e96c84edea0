// The actor mesh in one process (1 and 3 nodes) against the reference forward: outputs and
// activation records equal (max abs diff <= 1e-6) in top-k, threshold, affinity, router,
// hash, dense and recurrent layers; 200 concurrent requests; the deadline error.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"
#include "local_cluster_fixture.hpp"
#include "mesh_model.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <filesystem>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::test;

namespace {

struct cluster : local_cluster {
  explicit cluster(size_t nodes) : local_cluster(checkpoint(), nodes) {
    // nop
  }
};

} // namespace

TEST_CASE("the mesh on 1 and 3 nodes in one process equals the reference forward", "[mesh]") {
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  for (size_t nodes : {1, 3}) {
    INFO(nodes << " node(s)");
    cluster cl{nodes};
    caf::scoped_actor self{cl.sys};
    const auto x = random_input(40, 12, 100 + nodes);
    self->request(cl.coordinator, std::chrono::seconds(30), infer_atom::value, request_of(x))
      .receive([&](const infer_result& r) { CHECK(compare(*m, x, r) <= 1e-6); },
               [&](const caf::error& err) { FAIL(describe(err)); });
  }
}

TEST_CASE("200 concurrent requests each equal their own reference, batched", "[mesh]") {
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  cluster cl{3};
  caf::scoped_actor self{cl.sys};
  std::vector<matrix> inputs;
  std::vector<decltype(self->request(cl.coordinator, caf::infinite, infer_atom::value,
                                     infer_request{}))>
    pending;
  for (int i = 0; i < 200; ++i) {
    inputs.push_back(random_input(1 + i % 7, 12, 1000 + i));
    pending.push_back(
      self->request(cl.coordinator, std::chrono::seconds(60), infer_atom::value, request_of(inputs.back())));
  }
  size_t ok = 0;
  double worst = 0;
  for (size_t i = 0; i < pending.size(); ++i)
    pending[i].receive(
      [&](const infer_result& r) {
        worst = std::max(worst, compare(*m, inputs[i], r));
        ++ok;
      },
      [&](const caf::error& err) { FAIL("request " << i << ": " << describe(err)); });
  CHECK(ok == 200);
  CHECK(worst <= 1e-6);
  // They did not each cross the mesh alone: the ones that came while it was busy were stacked.
  self->request(cl.coordinator, std::chrono::seconds(5), status_atom::value)
    .receive(
      [&](const cluster_status& st) {
        INFO(st.batches << " batches");
        CHECK(st.batches >= 2);
        CHECK(st.batches < 100);
        CHECK(st.requests_served == 200);
      },
      [&](const caf::error& err) { FAIL(describe(err)); });
}

TEST_CASE("an expert that never answers gets the deadline error with its name", "[mesh]") {
  cluster cl{3};
  caf::scoped_actor self{cl.sys};
  self->request(cl.coordinator, std::chrono::seconds(5), mute_atom::value, std::uint32_t{1},
                std::uint32_t{3}, true)
    .receive([](ok_atom) {}, [&](const caf::error& err) { FAIL(describe(err)); });
  const auto start = std::chrono::steady_clock::now();
  self->request(cl.coordinator, std::chrono::seconds(10), infer_atom::value,
                request_of(random_input(8, 12, 5), 300))
    .receive([&](const infer_result&) { FAIL("a muted expert's request completed"); },
             [&](const caf::error& err) {
               CHECK(err.category() == mesh_category);
               CHECK(err.code() == static_cast<std::uint8_t>(mesh_errc::deadline_exceeded));
               CHECK_THAT(describe(err),
                          Catch::Matches("deadline_exceeded: request [0-9]+: layer 1: no answer "
                                         "from expert 1\\.3 within 300 ms"));
             });
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::milliseconds(300));
  CHECK(waited < std::chrono::milliseconds(300 + 500));
}

TEST_CASE("a message for several experts of a node crosses into it once", "[mesh]") {
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  cluster cl{3};
  caf::scoped_actor self{cl.sys};
  constexpr int requests = 5;
  for (int i = 0; i < requests; ++i)
    self->request(cl.coordinator, std::chrono::seconds(30), infer_atom::value,
                  request_of(random_input(6, 12, 50 + i)))
      .receive([](const infer_result&) {}, [&](const caf::error& err) { FAIL(describe(err)); });
  const auto want = expected_relay_counts(m->config, round_robin_placement(m->config, 3), 0, 3);
  self->request(cl.coordinator, std::chrono::seconds(5), stats_atom::value)
    .receive(
      [&](const std::vector<relay_stats>& stats) {
        REQUIRE(stats.size() == 3);
        std::uint64_t remote = 0, naive = 0;
        for (size_t n = 0; n < 3; ++n) {
          INFO("node " << n);
          CHECK(stats[n].remote_messages == requests * want.remote[n]);
          CHECK(stats[n].local_messages == requests * want.local[n]);
          CHECK(stats[n].deliveries > stats[n].remote_messages);
          remote += stats[n].remote_messages;
          naive += requests * want.naive_remote[n];
        }
        CHECK(remote < naive); // one message per node, not one per expert
      },
      [&](const caf::error& err) { FAIL(describe(err)); });
}

TEST_CASE("malformed requests are rejected by name", "[mesh]") {
  cluster cl{1};
  caf::scoped_actor self{cl.sys};
  auto bad = request_of(random_input(3, 11, 6));
  self->request(cl.coordinator, std::chrono::seconds(5), infer_atom::value, bad)
    .receive([&](const infer_result&) { FAIL("accepted"); },
             [&](const caf::error& err) {
               CHECK_THAT(describe(err), Catch::Matches("bad_request: request [0-9]+: tokens are "
                                                        "\\(3, 11\\), the model takes \\(T >= 1, 12\\)"));
             });
  auto truncated = request_of(random_input(3, 12, 7));
  truncated.tokens.bytes.pop_back();
  self->request(cl.coordinator, std::chrono::seconds(5), infer_atom::value, truncated)
    .receive([&](const infer_result&) { FAIL("accepted"); },
             [&](const caf::error& err) {
               CHECK_THAT(describe(err), Catch::Contains("request tokens: a (3, 12) tensor needs "
                                                         "144 bytes, got 143"));
             });
}
