// The actor mesh in one process (1 and 3 nodes) against the reference forward: outputs and
// activation records equal (max abs diff <= 1e-6) in top-k, threshold, affinity, router,
// hash, dense and recurrent layers; 200 concurrent requests; the deadline error.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "experts/checkpoint.hpp"
#include "experts/forward.hpp"
#include "experts/rng.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <filesystem>

using namespace eoe;
using namespace eoe::actors;

namespace {

const char* stack = R"(
[model]
name = "mesh_test"
input_dim = 12
dim = 16
classes = 5
seed = 3

[[layer]]
kind = "eoe"
experts = 5
hidden = 20
rank = 4
k = 2

[[layer]]
kind = "eoe"
experts = 4
hidden = 16
rank = 6
k = 2
affinity = true

[[layer]]
kind = "eoe"
experts = 4
hidden = 16
rank = 4
mode = "threshold"
tau = 0

[[layer]]
kind = "router"
experts = 3
hidden = 12
k = 2

[[layer]]
kind = "hash"
experts = 3
hidden = 8
k = 1

[[layer]]
kind = "eoe"
experts = 3
hidden = 12
rank = 4
k = 1
steps = 2

[[layer]]
kind = "dense"
hidden = 10
)";

matrix random_input(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  experts::rng r{seed};
  matrix x(rows, cols);
  for (Eigen::Index i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<float>(r.normal());
  return x;
}

/// The test model: perturbed weights (affinities, selection biases too) and thresholds at the
/// median score, so that every rule decides both ways. Written to a checkpoint once.
const std::string& checkpoint() {
  static const std::string path = [] {
    auto c = experts::parse_model_config(stack, "mesh_test");
    REQUIRE(c.has_value());
    auto m = experts::init_model(*c);
    experts::rng r{9};
    experts::for_each_parameter(m, [&](const std::string& name, matrix& t) {
      if (name.ends_with(".tau"))
        return;
      for (Eigen::Index i = 0; i < t.size(); ++i)
        t.data()[i] += static_cast<float>(0.05 * r.normal());
    });
    for (auto& lp : m.layers)
      for (auto& e : lp.experts)
        e.w2 *= 0.3f;
    auto be = kernels::make_cpu_backend();
    auto probe = experts::forward(*be, m, random_input(64, 12, 1));
    REQUIRE(probe.has_value());
    for (Eigen::Index e = 0; e < 4; ++e) {
      std::vector<float> s(probe->layers[2].scores.col(e).begin(),
                           probe->layers[2].scores.col(e).end());
      std::sort(s.begin(), s.end());
      m.layers[2].tau(0, e) = (s[31] + s[32]) / 2;
    }
    auto p = (std::filesystem::temp_directory_path() / "eoe_test_mesh.ckpt").string();
    REQUIRE(experts::save_checkpoint(m, p).has_value());
    return p;
  }();
  return path;
}

infer_request request_of(const matrix& x, std::uint32_t deadline_ms = 10000) {
  infer_request req;
  req.tokens = to_wire(x);
  req.deadline_ms = deadline_ms;
  return req;
}

/// Max abs difference of outputs; records compared exactly (experts) and to 1e-6 (gates,
/// scores).
double compare(const experts::model& m, const matrix& x, const infer_result& got) {
  auto be = kernels::make_cpu_backend();
  auto want = experts::forward(*be, m, x);
  REQUIRE(want.has_value());
  const matrix out = from_wire(got.output, "output");
  REQUIRE(out.rows() == want->output.rows());
  REQUIRE(out.cols() == want->output.cols());
  REQUIRE(got.layers.size() == want->layers.size());
  for (size_t l = 0; l < got.layers.size(); ++l) {
    INFO("layer " << l);
    const auto& g = got.layers[l];
    const auto& w = want->layers[l];
    CHECK(g.kind == static_cast<std::uint8_t>(w.kind));
    CHECK(unpack<std::int32_t>(g.offsets, "offsets") == w.active.offsets);
    CHECK(unpack<std::int32_t>(g.experts, "experts") == w.active.experts);
    auto gates = unpack<float>(g.gates, "gates");
    REQUIRE(gates.size() == w.active.gates.size());
    for (size_t i = 0; i < gates.size(); ++i)
      CHECK(std::abs(gates[i] - w.active.gates[i]) <= 1e-6f);
    if (w.scores.size()) {
      const matrix s = from_wire(g.scores, "scores");
      CHECK((s - w.scores).cwiseAbs().maxCoeff() <= 1e-6f);
    }
  }
  return (out - want->output).cwiseAbs().maxCoeff();
}

struct cluster {
  mesh_config cfg;
  caf::actor_system sys;
  coordinator_actor coordinator;

  explicit cluster(size_t nodes) : sys(cfg) {
    coordinator = spawn_local_cluster(sys, checkpoint(), nodes);
    REQUIRE(wait_ready(sys, coordinator, std::chrono::seconds(20)));
  }

  ~cluster() {
    caf::anon_send(coordinator, shutdown_atom::value);
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

TEST_CASE("200 concurrent requests each equal their own reference", "[mesh]") {
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
