// Membership of a running mesh: a zero expert added mid-flight changes no output bit; 64
// concurrent requests stay right, none lost or failed, while experts are added and removed 20
// times; removed experts drain and exit; an answer names its experts as the topology does.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "local_cluster_fixture.hpp"
#include "mesh_model.hpp"
#include "experts/model/checkpoint.hpp"
#include "net/infer_json.hpp"
#include "net/load_generator.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <thread>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::test;

namespace {

struct cluster : local_cluster {
  explicit cluster(size_t nodes) : local_cluster(checkpoint(), nodes) {
    // nop
  }

  matrix output_of(const matrix& x) {
    caf::scoped_actor self{sys};
    matrix out;
    self->request(coordinator, std::chrono::seconds(30), infer_atom::value, request_of(x))
      .receive([&](const infer_result& r) { out = from_wire(r.output, "output"); },
               [&](const caf::error& err) { FAIL(describe(err)); });
    return out;
  }
};

} // namespace

TEST_CASE("a zero expert joins a running mesh without changing an output bit", "[membership]") {
  cluster cl{3};
  const auto x = random_input(32, 12, 900);
  const auto before = cl.output_of(x);
  const auto epoch = cl.change(add_expert_atom::value, std::uint32_t{0}, std::string{"n2"},
                               std::string{"zero"});
  CHECK(epoch == 2);
  const auto s = cl.status();
  CHECK(s.epoch == 2);
  CHECK(std::find(s.experts.begin(), s.experts.end(), "0.5@n2") != s.experts.end());
  CHECK(cl.output_of(x) == before);
}

TEST_CASE("a clone joins a threshold layer of a running mesh, outputs within 1e-6",
          "[membership]") {
  cluster cl{3};
  const auto x = random_input(32, 12, 901);
  const auto before = cl.output_of(x);
  cl.change(add_expert_atom::value, std::uint32_t{2}, std::string{"n3"}, std::string{"clone:2.1"});
  CHECK((cl.output_of(x) - before).cwiseAbs().maxCoeff() <= 1e-6f);
  // Refusals name the reason.
  caf::scoped_actor self{cl.sys};
  self->request(cl.coordinator, std::chrono::seconds(10), add_expert_atom::value,
                std::uint32_t{0}, std::string{"n1"}, std::string{"clone:0.1"})
    .receive([](std::uint64_t) { FAIL("a top-k clone was accepted"); },
             [](const caf::error& err) {
               CHECK_THAT(describe(err), Catch::Contains("layer 0 runs top-k"));
             });
  self->request(cl.coordinator, std::chrono::seconds(10), remove_expert_atom::value,
                std::uint32_t{0}, std::uint32_t{42})
    .receive([](std::uint64_t) { FAIL("a non-member was removed"); },
             [](const caf::error& err) {
               CHECK(describe(err)
                     == "bad_request: remove expert: 0.42 is not a member of the current epoch");
             });
}

TEST_CASE("after a removal an answer names its experts by the stable ids the topology lists "
          "(issue 26)",
          "[membership]") {
  cluster cl{3};
  CHECK(cl.change(remove_expert_atom::value, std::uint32_t{0}, std::uint32_t{1}) == 2);
  // What /v1/topology and `eoe status` list: "L.E@node".
  const auto s = cl.status();
  REQUIRE(s.epoch == 2);
  std::set<std::string> listed;
  std::map<std::uint32_t, std::set<std::uint32_t>> ids_of_layer;
  for (const auto& e : s.experts) {
    const auto dot = e.find('.'), at = e.find('@');
    REQUIRE((dot != std::string::npos && at != std::string::npos && dot < at));
    listed.insert(e.substr(0, at));
    ids_of_layer[static_cast<std::uint32_t>(std::stoul(e.substr(0, dot)))].insert(
      static_cast<std::uint32_t>(std::stoul(e.substr(dot + 1, at - dot - 1))));
  }
  CHECK(ids_of_layer[0] == std::set<std::uint32_t>{0, 2, 3, 4});

  const auto x = random_input(32, 12, 902);
  infer_result r;
  {
    caf::scoped_actor self{cl.sys};
    self->request(cl.coordinator, std::chrono::seconds(30), infer_atom::value, request_of(x))
      .receive([&](infer_result& got) { r = std::move(got); },
               [&](const caf::error& err) { FAIL(describe(err)); });
  }
  REQUIRE(r.epoch == 2);
  const auto schedule = expert_schedule(experts::parse_model_config(stack, "mesh_test").value());
  REQUIRE(r.layers.size() == schedule.size());
  std::set<std::int32_t> layer0;
  for (size_t u = 0; u < r.layers.size(); ++u) {
    const auto& l = r.layers[u];
    INFO("unrolled layer " << u << " (layer " << l.layer << ")");
    CHECK(l.layer == schedule[u]);
    const auto members = members_of(l);
    CHECK(std::set<std::uint32_t>(members.begin(), members.end()) == ids_of_layer[l.layer]);
    for (auto e : unpack<std::int32_t>(l.experts, "experts")) {
      CHECK(listed.contains(std::to_string(l.layer) + "." + std::to_string(e)));
      if (u == 0)
        layer0.insert(e);
    }
  }
  // Top-k 2 of the 4 left on every token: the removed 0.1 is never named, 0.4 (position 3) is.
  CHECK(!layer0.contains(1));
  CHECK(layer0.contains(4));

  // The HTTP answer says the same: "layer" L and "experts" E are the topology's L.E.
  const auto j = nlohmann::json::parse(net::infer_result_json(r));
  const auto d = decode(r, expert_numbering::stable_ids);
  REQUIRE(j.at("layers").size() == r.layers.size());
  for (size_t u = 0; u < r.layers.size(); ++u) {
    const auto& jl = j["layers"][u];
    CHECK(jl.at("layer").get<std::uint32_t>() == r.layers[u].layer);
    CHECK(jl.contains("step") == (schedule[u] == 5)); // the recurrent layer runs twice
    for (size_t t = 0; t < d.layers[u].active.tokens(); ++t) {
      const auto e = d.layers[u].active.experts_of(t);
      CHECK(jl["tokens"][t]["experts"].get<std::vector<std::int32_t>>()
            == std::vector<std::int32_t>(e.begin(), e.end()));
    }
  }
  CHECK(j["layers"][5]["step"] == 1);
  CHECK(j["layers"][6]["step"] == 2);

  // Decoded by position, the answer is the reference forward of the epoch's model.
  std::string bytes;
  {
    caf::scoped_actor self{cl.sys};
    self->request(cl.coordinator, std::chrono::seconds(10), model_atom::value, std::uint64_t{2})
      .receive([&](const std::string& b) { bytes = b; },
               [&](const caf::error& err) { FAIL(describe(err)); });
  }
  auto m = experts::parse_checkpoint(std::vector<char>(bytes.begin(), bytes.end()), "epoch 2");
  REQUIRE(m.has_value());
  CHECK(compare(*m, x, r) <= 1e-6);
}

TEST_CASE("64 concurrent requests while experts are added and removed 20 times: 0 wrong, "
          "0 lost, 0 failed",
          "[membership]") {
  cluster cl{3};
  net::load_options opt;
  opt.requests = 3000;
  opt.concurrency = 64;
  opt.tokens = 3;
  std::atomic<size_t> answered{0};
  net::load_report rep;
  std::thread load([&] { rep = net::run_load(cl.sys, cl.coordinator, opt, &answered); });
  // Layers 0, 1, 2 and 5 are eoe layers; removals take originals, additions are zero experts.
  const std::vector<std::tuple<bool, std::uint32_t, std::uint32_t>> changes = {
    {true, 0, 0}, {false, 0, 4}, {true, 1, 1}, {false, 1, 0}, {true, 2, 2}, {false, 2, 3},
    {true, 5, 0}, {false, 5, 2}, {true, 0, 1}, {false, 0, 1}, {true, 1, 2}, {false, 2, 0},
    {true, 2, 0}, {false, 0, 2}, {true, 5, 1}, {false, 1, 3}, {true, 0, 2}, {false, 5, 0},
    {true, 1, 0}, {false, 0, 3}};
  std::uint64_t last = 1;
  for (size_t i = 0; i < changes.size(); ++i) {
    while (answered < (i + 1) * opt.requests / (changes.size() + 2))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto [add, layer, x] = changes[i];
    const auto epoch = add ? cl.change(add_expert_atom::value, layer,
                                       std::string{"n"} + std::to_string(1 + x % 3),
                                       std::string{"zero"})
                           : cl.change(remove_expert_atom::value, layer, x);
    CHECK(epoch == last + 1);
    last = epoch;
  }
  load.join();
  INFO("ok " << rep.ok << " wrong " << rep.wrong << " failed " << rep.failed << " lost "
             << rep.lost << " worst diff " << rep.worst_difference);
  for (auto& [text, n] : rep.errors)
    INFO(n << " x " << text);
  CHECK(rep.ok == opt.requests);
  CHECK(rep.wrong == 0);
  CHECK(rep.failed == 0);
  CHECK(rep.lost == 0);
  CHECK(rep.per_epoch.size() > 10); // the answers came from many epochs
  // Old epochs retire once their requests are answered; the removed experts have drained.
  for (int i = 0; i < 100 && cl.status().live_epochs.size() > 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto s = cl.status();
  CHECK(s.live_epochs == std::vector<std::uint64_t>{last});
  CHECK(s.in_flight == 0);
}

TEST_CASE("a node without the cluster's secret cannot join; with it, it can", "[membership][security]") {
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  auto coordinator = actors::spawn_local_cluster(sys, "", 2, "correct horse");
  REQUIRE(actors::wait_ready(sys, coordinator, std::chrono::seconds(20)));
  auto stranger = sys.spawn(actors::node_agent_behavior, std::string{"n9"});
  caf::scoped_actor self{sys};
  for (const std::string attempt : {"", "wrong", "correct hors", "correct horse!"}) {
    INFO("secret '" << attempt << "'");
    std::string failure;
    self->request(coordinator, std::chrono::seconds(10), actors::join_atom::value,
                  std::string{"n9"}, std::string{"in-process"}, stranger, attempt)
      .receive([](actors::ok_atom) {}, [&](const caf::error& e) { failure = actors::describe(e); });
    CHECK(failure == "unauthorized: join refused: node 'n9' did not present the cluster's secret");
  }
  auto nodes_now = [&] {
    std::vector<std::string> out;
    self->request(coordinator, std::chrono::seconds(10), actors::status_atom::value)
      .receive([&](const actors::cluster_status& s) { out = s.nodes; },
               [&](const caf::error& e) { FAIL(actors::describe(e)); });
    return out;
  };
  CHECK(nodes_now() == std::vector<std::string>{"n1", "n2"});
  bool joined = false;
  self->request(coordinator, std::chrono::seconds(10), actors::join_atom::value,
                std::string{"n9"}, std::string{"in-process"}, stranger, std::string{"correct horse"})
    .receive([&](actors::ok_atom) { joined = true; },
             [&](const caf::error& e) { FAIL(actors::describe(e)); });
  CHECK(joined);
  CHECK(nodes_now() == std::vector<std::string>{"n1", "n2", "n9"});
  anon_send(coordinator, actors::shutdown_atom::value);
  anon_send_exit(stranger, caf::exit_reason::user_shutdown);
}
