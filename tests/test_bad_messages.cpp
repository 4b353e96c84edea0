// Bad messages to live actors (issue 25 item 4): malformed tensors, truncated packed vectors,
// plans of the wrong shape, duplicate and forged inputs, specs that do not fit, queries of
// the wrong heads or positions, unknown contexts, epochs and request ids. Each is refused with
// an error naming what is wrong (a request) or dropped with one line naming it (a one-way
// message); nothing else fails with it, and the same actors then answer a correct request as
// the reference does.

#include "actors/composer_actor.hpp"
#include "actors/context_actor.hpp"
#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/node_agent.hpp"
#include "actors/relay_actor.hpp"
#include "actors/request_batcher.hpp"
#include "actors/wire.hpp"
#include "experts/model/lm_decode.hpp"
#include "context_model.hpp"
#include "eventually.hpp"
#include "local_cluster_fixture.hpp"
#include "mesh_model.hpp"
#include "random_model.hpp"

#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

using namespace eoe;
using namespace eoe::actors;

namespace {

using test::eventually;

/// The error a request gets ("(answered)" when it is answered): T is what an answer carries.
template <class T, class Handle, class... Ts>
std::string refusal(caf::scoped_actor& self, const Handle& to, Ts&&... xs) {
  std::string out = "(answered)";
  self->request(to, std::chrono::seconds(10), std::forward<Ts>(xs)...)
    .receive([](const T&) {}, [&](const caf::error& e) { out = describe(e); });
  return out;
}

std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::ifstream in{p};
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

/// A temporary file for what the actors print, removed when the test ends.
struct printed_file {
  std::filesystem::path path = std::filesystem::temp_directory_path()
                               / ("eoe_test_bad_messages_" + std::to_string(::getpid()) + ".out");
  ~printed_file() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

// ---- the context composer and its shards ------------------------------------------------

struct context_cluster : test::local_cluster {
  context_actor contexts = local_cluster::contexts();

  context_cluster() : local_cluster("", 3) {
    // nop
  }
};

heads_tensor one(const matrix& m) {
  return heads_tensor{to_wire(m)};
}

std::uint64_t create(caf::scoped_actor& self, const context_actor& ctx, const context_spec& spec) {
  std::uint64_t id = 0;
  self->request(ctx, std::chrono::seconds(10), create_atom::value, spec)
    .receive([&](std::uint64_t i) { id = i; }, [](const caf::error& e) { FAIL(describe(e)); });
  return id;
}

/// Appends rows [from, to) of the test context to context id in uneven chunks, checking the
/// length each append answers.
void append_rows(caf::scoped_actor& self, const context_actor& ctx, std::uint64_t id,
                 const test::test_context& tc, std::int64_t from, std::int64_t to) {
  for (std::int64_t at = from; at < to; at += 137) {
    const auto n = std::min<std::int64_t>(137, to - at);
    self->request(ctx, std::chrono::seconds(30), append_atom::value, id,
                  one(tc.k.middleRows(at, n)), one(tc.v.middleRows(at, n)))
      .receive([&](std::uint64_t len) { CHECK(len == static_cast<std::uint64_t>(at + n)); },
               [](const caf::error& e) { FAIL(describe(e)); });
  }
}

/// Rows [0, n) of the test context in one shard, as the math holds it.
context::kv_shard math_shard(const test::test_context& tc, std::int64_t n) {
  context::kv_shard s{{1, 16, 8}, 0, 1000};
  const matrix ks = tc.k.topRows(n), vs = tc.v.topRows(n);
  s.append(std::span<const matrix>{&ks, 1}, std::span<const matrix>{&vs, 1});
  return s;
}

/// Every head's causal attention of the query row q at `position` after appending rows
/// [position, position + 1) of the test context to context id, against the math.
double decode_against_math(caf::scoped_actor& self, const context_actor& ctx, std::uint64_t id,
                           const test::test_context& tc, const matrix& q, std::int64_t position) {
  double diff = 1e9;
  self
    ->request(ctx, std::chrono::seconds(10), decode_atom::value, id,
              one(tc.k.middleRows(position, 1)), one(tc.v.middleRows(position, 1)), one(q),
              pack(std::vector<std::int64_t>{position}))
    .receive(
      [&](const std::vector<wire_partial>& heads) {
        REQUIRE(heads.size() == 1);
        const auto want = math_shard(tc, position + 1).attend(0, q, std::vector<std::int64_t>{position}, true);
        diff = (from_wire(heads[0]).out - want.out).cwiseAbs().maxCoeff();
      },
      [](const caf::error& e) { FAIL(describe(e)); });
  return diff;
}

} // namespace

TEST_CASE("the context composer refuses specs, appends, queries and decodes that do not fit, "
          "naming the field, and changes nothing for them",
          "[bad_messages][context]") {
  context_cluster cl;
  caf::scoped_actor self{cl.sys};
  const test::test_context tc; // spec {1 head, head_dim 16, blocks of 8, shards of 100}
  const auto& ctx = cl.contexts;
  using u64 = std::uint64_t;

  // Specs: values that do not fit an int, and shards whose memory is absurd.
  CHECK(refusal<u64>(self, ctx, create_atom::value, context_spec{1u << 31, 16, 8, 100})
        == "bad_request: context: heads = 2147483648 does not fit an int");
  CHECK(refusal<u64>(self, ctx, create_atom::value, context_spec{1, 1u << 31, 8, 100})
        == "bad_request: context: head_dim = 2147483648 does not fit an int");
  CHECK(refusal<u64>(self, ctx, create_atom::value, context_spec{1, 16, 1, u64{1} << 40})
        == "bad_request: context: shard_size = 1099511627776 makes 1099511627776 blocks of 1 in "
           "a shard, more than an int counts");
  CHECK(refusal<u64>(self, ctx, create_atom::value, context_spec{64, 128, 64, u64{1} << 20})
        == "bad_request: context: a shard of 1048576 positions (64 heads of 128, blocks of 64) "
           "needs 70602719232 bytes, over the 16 GiB a shard may hold (make shard_size smaller)");
  CHECK(refusal<u64>(self, ctx, create_atom::value, context_spec{0, 16, 8, 100})
        == "bad_request: context: heads, head_dim, block_size and shard_size must be >= 1");

  // An append is checked whole before any of it goes: one that would fill the first shard and
  // fail in the second leaves the context as it was.
  const auto id = create(self, ctx, tc.spec);
  auto short_k = one(tc.k.topRows(150));
  short_k[0].bytes.resize(120 * 16 * 4);
  CHECK(refusal<u64>(self, ctx, append_atom::value, id, short_k, one(tc.v.topRows(150)))
        == "bad_request: context " + std::to_string(id)
             + ": append: head 0 needs (150, 16) keys and values in 9600 bytes; its keys are "
               "(150, 16) in 7680 bytes");
  CHECK(refusal<u64>(self, ctx, append_atom::value, id, one(tc.k.topRows(150)),
                     one(tc.v.topRows(150).leftCols(15)))
        == "bad_request: context " + std::to_string(id)
             + ": append: head 0 needs (150, 16) keys and values in 9600 bytes; its values are "
               "(150, 15) in 9000 bytes");
  append_rows(self, ctx, id, tc, 0, tc.length); // every length as if nothing had come before

  // Queries: the wrong head, short or narrow tensors, truncated or missing positions, positions
  // the causal mask cannot take, a mode, fraction or k that is none.
  const std::vector<std::int64_t> pos{10, 500};
  const auto q = test::queries(2, 5);
  const auto ctx_error = [&](attention_query a) {
    return refusal<wire_partial>(self, ctx, query_atom::value, id, std::move(a));
  };
  const auto named = [&](const std::string& what) {
    return "bad_request: context " + std::to_string(id) + ": " + what;
  };
  auto a = test::query_of(q, pos, 0);
  a.head = 1;
  CHECK(ctx_error(a) == named("query head 1, the context has 1 heads"));
  a = test::query_of(q, pos, 0);
  a.q.bytes.resize(a.q.bytes.size() - 4);
  CHECK(ctx_error(a)
        == named("the query is (2, 16) in 124 bytes; the context's heads take (2, 16) in 128 bytes"));
  CHECK(ctx_error(test::query_of(q.leftCols(15), pos, 0))
        == named("the query is (2, 15) in 120 bytes; the context's heads take (2, 16) in 128 bytes"));
  a = test::query_of(q, pos, 0);
  a.positions.resize(7);
  CHECK(ctx_error(a) == named("query positions: 7 bytes is not a whole number of 8-byte values"));
  CHECK(ctx_error(test::query_of(q, {10}, 0)) == named("1 query positions for 2 query rows"));
  CHECK(ctx_error(test::query_of(q, {-1, 500}, 0))
        == named("query position -1 (row 0) is outside [0, 2^62)"));
  CHECK(ctx_error(test::query_of(q, {10, std::numeric_limits<std::int64_t>::max()}, 1, 5))
        == named("query position 9223372036854775807 (row 1) is outside [0, 2^62)"));
  CHECK(ctx_error(test::query_of(test::queries(16385, 6), std::vector<std::int64_t>(16385, 7), 0))
        == named("a query of 16385 rows: at most 16384 per query"));
  CHECK(ctx_error(test::query_of(q, pos, 3))
        == named("query mode 3: 0 full, 1 global top-k, 2 per-shard budget"));
  a = test::query_of(q, pos, 0);
  a.score = static_cast<context::block_score>(7);
  CHECK(ctx_error(a) == named("query score 7: 0 Quest bound, 1 MoBA mean key"));
  CHECK(ctx_error(test::query_of(q, pos, 2, 0, 1.5)) == named("query fraction 1.500000 is outside [0, 1]"));
  const auto nan = ctx_error(test::query_of(q, pos, 2, 0, std::nan("")));
  CHECK_THAT(nan, Catch::StartsWith(named("query fraction ")) && Catch::EndsWith("nan is outside [0, 1]"));
  CHECK(ctx_error(test::query_of(q, pos, 1, 1u << 31)) == named("query k = 2147483648 does not fit an int"));
  CHECK(refusal<wire_partial>(self, ctx, query_atom::value, u64{999}, test::query_of(q, pos, 0))
        == "bad_request: context 999 does not exist");
  CHECK(refusal<ok_atom>(self, ctx, drop_atom::value, u64{999}) == "bad_request: context 999 does not exist");

  // The same context answers as the math does in every mode.
  const auto shards = tc.shards();
  for (std::uint8_t mode : {0, 1, 2}) {
    INFO("mode " << int(mode));
    const auto want = test::expected(shards, q, pos, mode, 5, 0.25);
    self->request(ctx, std::chrono::seconds(30), query_atom::value, id, test::query_of(q, pos, mode, 5, 0.25))
      .receive(
        [&](const wire_partial& w) {
          const auto got = from_wire(w);
          REQUIRE(got.out.rows() == want.out.rows());
          CHECK((got.out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
        },
        [](const caf::error& e) { FAIL(describe(e)); });
  }
}

TEST_CASE("a refused decode appends nothing: alone or in a batch, the next decode of its context "
          "equals the math, and the batch's other items are answered",
          "[bad_messages][context]") {
  context_cluster cl;
  caf::scoped_actor self{cl.sys};
  const test::test_context tc;
  const auto& ctx = cl.contexts;
  using partials = std::vector<wire_partial>;
  const auto alone = create(self, ctx, tc.spec);
  const auto batched = create(self, ctx, tc.spec);
  const auto other = create(self, ctx, tc.spec);
  for (auto id : {alone, batched, other})
    append_rows(self, ctx, id, tc, 0, 50);
  // Keys and values that would show if they were appended: the next decode reads position 50.
  const auto junk = one(matrix::Constant(1, 16, 5.0f));
  const auto q = test::queries(1, 9);
  auto seven = pack(std::vector<std::int64_t>{50});
  seven.resize(7);
  const auto at_50 = pack(std::vector<std::int64_t>{50});
  const auto named = [](std::uint64_t id, const std::string& what) {
    return "bad_request: context " + std::to_string(id) + ": decode: " + what;
  };
  CHECK(refusal<partials>(self, ctx, decode_atom::value, alone, junk, junk, one(q), seven)
        == named(alone, "query positions: 7 bytes is not a whole number of 8-byte values"));
  CHECK(refusal<partials>(self, ctx, decode_atom::value, alone, junk, junk, one(q.leftCols(15)), at_50)
        == named(alone, "head 0 needs (1, 16) queries in 64 bytes; its queries are (1, 15) in 60 bytes"));
  auto short_k = junk;
  short_k[0].bytes.resize(60);
  CHECK(refusal<partials>(self, ctx, decode_atom::value, alone, short_k, junk, one(q), at_50)
        == named(alone, "head 0 needs (1, 16) keys and values in 64 bytes; its keys are (1, 16) in 60 bytes"));
  CHECK(refusal<partials>(self, ctx, decode_atom::value, alone, junk, junk, one(q),
                          pack(std::vector<std::int64_t>{50, 51}))
        == named(alone, "2 query positions for 1 query rows"));
  CHECK(refusal<partials>(self, ctx, decode_atom::value, alone, junk, junk, one(q),
                          pack(std::vector<std::int64_t>{-3}))
        == named(alone, "query position -3 (row 0) is outside [0, 2^62)"));
  CHECK(refusal<partials>(self, ctx, decode_atom::value, std::uint64_t{999}, junk, junk, one(q), at_50)
        == "bad_request: context 999 does not exist");
  CHECK(decode_against_math(self, ctx, alone, tc, q, 50) <= 1e-6);

  // A batch (the node agents' path): one malformed item, one of an unknown context, one good.
  std::vector<decode_item> items(3);
  items[0] = {batched, junk, junk, one(q), seven};
  items[1] = {999, junk, junk, one(q), at_50};
  items[2] = {other, one(tc.k.middleRows(50, 1)), one(tc.v.middleRows(50, 1)), one(q), at_50};
  self->request(ctx, std::chrono::seconds(10), decode_atom::value, items)
    .receive(
      [&](const std::vector<attention_reply>& replies) {
        REQUIRE(replies.size() == 3);
        CHECK(replies[0].error
              == named(batched, "query positions: 7 bytes is not a whole number of 8-byte values"));
        CHECK(replies[0].heads.empty());
        CHECK(replies[1].error == "bad_request: context 999 does not exist");
        REQUIRE(replies[2].error.empty());
        REQUIRE(replies[2].heads.size() == 1);
        const auto want = math_shard(tc, 51).attend(0, q, std::vector<std::int64_t>{50}, true);
        CHECK((from_wire(replies[2].heads[0]).out - want.out).cwiseAbs().maxCoeff() <= 1e-6f);
      },
      [](const caf::error& e) { FAIL(describe(e)); });
  CHECK(decode_against_math(self, ctx, batched, tc, q, 50) <= 1e-6);
  CHECK(decode_against_math(self, ctx, other, tc, test::queries(1, 10), 51) <= 1e-6);
}

// ---- a mesh of relay, experts and composer, spawned by hand -------------------------------

namespace {

/// What the composer's front hands on instead of what the experts sent, and what it holds.
struct front_state {
  composer_actor composer;
  std::map<std::tuple<std::uint64_t, std::uint32_t, std::uint32_t>, expert_record> records;
  std::map<std::tuple<std::uint64_t, std::uint32_t, std::uint32_t>, contribution> outputs;
  std::set<std::uint64_t> held;             ///< requests whose messages wait
  std::vector<caf::message> waiting;        ///< theirs, in order

  static inline const char* name = "test.composer_front";
};

/// Stands where the plans name the composer, so that what the experts send it passes here:
/// handed on as it came, or replaced by a forgery registered for its (request, layer, expert),
/// or held while its request is (then handed on in order). Deterministic where a forgery sent
/// beside the real message would race it.
caf::behavior composer_front(caf::stateful_actor<front_state>* self, composer_actor composer) {
  self->state.composer = std::move(composer);
  const auto hand_on = [self](std::uint64_t request, caf::message msg) {
    auto& st = self->state;
    if (st.held.contains(request))
      st.waiting.push_back(std::move(msg));
    else
      caf::anon_send(caf::actor_cast<caf::actor>(st.composer), std::move(msg));
  };
  return {
    [=](record_atom, expert_record& r) {
      auto& st = self->state;
      if (auto f = st.records.find({r.request, r.layer, r.expert}); f != st.records.end())
        r = f->second;
      hand_on(r.request, caf::make_message(record_atom::value, std::move(r)));
    },
    [=](contrib_atom, contribution& c) {
      auto& st = self->state;
      if (auto f = st.outputs.find({c.request, c.to_layer, c.sender}); f != st.outputs.end())
        c = f->second;
      hand_on(c.request, caf::make_message(contrib_atom::value, std::move(c)));
    },
    [=](ok_atom, const expert_record& r) {
      self->state.records[{r.request, r.layer, r.expert}] = r;
      return ok_atom::value;
    },
    [=](ok_atom, const contribution& c) {
      self->state.outputs[{c.request, c.to_layer, c.sender}] = c;
      return ok_atom::value;
    },
    [=](mute_atom, std::uint64_t request, bool hold) {
      auto& st = self->state;
      if (hold) {
        st.held.insert(request);
      } else {
        st.held.erase(request);
        for (auto& m : st.waiting)
          caf::anon_send(caf::actor_cast<caf::actor>(st.composer), std::move(m));
        st.waiting.clear();
      }
      return ok_atom::value;
    },
  };
}

/// One node's relay and every expert of the test model, and the composer (behind its front),
/// in epoch 1.
struct mini_mesh {
  caf::actor_system& sys;
  std::shared_ptr<const experts::model> model;
  relay_actor relay;
  composer_actor composer;
  caf::actor front;
  std::vector<std::vector<expert_actor>> experts; ///< [layer][id]
  std::vector<std::vector<std::uint32_t>> members, placement;
  mesh_plan plan;

  mini_mesh(caf::actor_system& s, std::shared_ptr<const experts::model> m,
            composer_setup setup = {})
    : sys(s), model(std::move(m)) {
    caf::scoped_actor self{sys};
    relay = sys.spawn(relay_behavior, std::string{"n1"});
    composer = sys.spawn(composer_behavior, model, std::string{"n1"}, std::move(setup));
    front = sys.spawn(composer_front, composer);
    for (std::uint32_t l = 0; l < model->layers.size(); ++l) {
      auto& layer = experts.emplace_back();
      members.emplace_back();
      placement.emplace_back();
      for (std::uint32_t e = 0; e < model->layers[l].experts.size(); ++e) {
        layer.push_back(sys.spawn(
          expert_behavior,
          expert_spec{std::make_shared<const experts::ffn_expert>(model->layers[l].experts[e]), l,
                      e, "n1"}));
        self->send(relay, spawn_atom::value, l, e, layer.back());
        members.back().push_back(e);
        placement.back().push_back(0);
      }
    }
    plan = plan_of(1, *model);
    REQUIRE(refusal<ok_atom>(self, relay, plan_atom::value, plan) == "(answered)");
    REQUIRE(refusal<ok_atom>(self, composer, plan_atom::value, plan) == "(answered)");
  }

  ~mini_mesh() {
    caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(composer, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(front, caf::exit_reason::user_shutdown);
    for (auto& layer : experts)
      for (auto& e : layer)
        caf::anon_send_exit(e, caf::exit_reason::user_shutdown);
  }

  mesh_plan plan_of(std::uint64_t epoch, const experts::model& m) const {
    return make_plan(epoch, m, members, placement, {"n1"}, {relay}, {""},
                     caf::actor_cast<composer_actor>(front), 0);
  }

  /// A request to the composer under the id `id` at epoch 1, checked against the reference.
  double reference_diff(caf::scoped_actor& self, std::uint64_t id, std::uint64_t seed) {
    const auto x = test::random_input(6, 12, seed);
    double diff = 1e9;
    self->request(composer, std::chrono::seconds(10), infer_atom::value, id, std::uint64_t{1},
                  test::request_of(x))
      .receive([&](const infer_result& r) { diff = test::compare(*model, x, r); },
               [](const caf::error& e) { FAIL(describe(e)); });
    return diff;
  }
};

std::shared_ptr<const experts::model> test_model() {
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  return std::make_shared<const experts::model>(std::move(*m));
}

} // namespace

TEST_CASE("relay, experts and composer refuse plans that do not fit, drop forged and unknown "
          "inputs naming them, fail only the forged request, and answer as the reference",
          "[bad_messages][mesh]") {
  const auto m = test_model();
  const printed_file printed;
  std::vector<std::string> lines;
  {
    actors::mesh_config cfg;
    caf::actor_system sys{cfg};
    caf::actor_ostream::redirect_all(sys, printed.path.string());
    mini_mesh mesh{sys, m};
    caf::scoped_actor self{sys};
    CHECK(mesh.reference_diff(self, 1, 1) <= 1e-6);

    // Plans: each refused whole by whoever gets it.
    auto p = mesh.plan;
    p.epoch = 2;
    p.composer_node = 5;
    CHECK(refusal<ok_atom>(self, mesh.relay, plan_atom::value, p)
          == "bad_request: relay n1: plan of epoch 2: composer_node 5 but 1 node(s)");
    CHECK(refusal<ok_atom>(self, mesh.composer, plan_atom::value, p)
          == "bad_request: composer: plan of epoch 2: composer_node 5 but 1 node(s)");
    p = mesh.plan;
    p.epoch = 2;
    p.relays.clear();
    CHECK(refusal<ok_atom>(self, mesh.relay, plan_atom::value, p)
          == "bad_request: relay n1: plan of epoch 2: 0 relay(s) for 1 node(s)");
    p = mesh.plan;
    p.epoch = 2;
    p.layer_params[2][2] = to_wire(matrix::Zero(1, 3)); // layer 2's tau: 4 experts read it
    CHECK(refusal<ok_atom>(self, mesh.relay, plan_atom::value, p)
          == "bad_request: relay n1: plan of epoch 2: layer 2's tau is (1, 3), its config wants (1, 4)");
    CHECK(refusal<ok_atom>(self, mesh.experts[2][0], plan_atom::value, p)
          == "bad_request: expert 2.0: plan of epoch 2: layer 2's tau is (1, 3), its config wants (1, 4)");
    p = mesh.plan;
    p.epoch = 2;
    p.placement[1][3] = 3;
    CHECK(refusal<ok_atom>(self, mesh.relay, plan_atom::value, p)
          == "bad_request: relay n1: plan of epoch 2: placement names node 3");
    p = mesh.plan;
    p.epoch = 2;
    p.config = "[model";
    CHECK_THAT(refusal<ok_atom>(self, mesh.composer, plan_atom::value, p),
               Catch::StartsWith("bad_request: composer: plan of epoch 2"));
    auto wider = m->config;
    wider.layers[1].hidden = 18;
    CHECK(refusal<ok_atom>(self, mesh.experts[1][0], plan_atom::value, mesh.plan_of(2, experts::init_model(wider)))
          == "bad_request: expert 1.0: plan of epoch 2: its w1 is (16, 16), layer 1 wants (16, 18)");
    auto other = m->config;
    other.dim = 20;
    CHECK(refusal<ok_atom>(self, mesh.composer, plan_atom::value, mesh.plan_of(2, experts::init_model(other)))
          == "bad_request: composer: plan of epoch 2: its model (dim 20, 7 layers) is not the "
             "composer's (dim 16, 7 layers)");
    // What the refused plan with composer_node 5 would have made of this: dropped, named.
    contribution late;
    late.request = 50;
    late.epoch = 2;
    late.to_layer = static_cast<std::uint32_t>(expert_schedule(m->config).size());
    late.sender_node = "n2";
    self->send(mesh.relay, contrib_atom::value, late);

    // Expert 1.0 (top-k over affinity mixes: it shares scores and waits for its peers'): its
    // inputs for request 7001 from the 5 experts of layer 0, then one of them again after it
    // has mixed them.
    const auto input = [](std::uint32_t sender) {
      contribution c;
      c.request = 7001;
      c.epoch = 1;
      c.to_layer = 1;
      c.sender = sender;
      c.sender_node = "n1";
      c.deadline_ms = 300;
      c.record = false;
      if (sender == 0)
        c.stream = to_wire(test::random_input(3, 16, 8));
      return c;
    };
    for (std::uint32_t s = 0; s < 5; ++s)
      self->send(mesh.experts[1][0], contrib_atom::value, input(s));
    self->send(mesh.experts[1][0], contrib_atom::value, input(1));
    // An epoch nobody has, to an expert and to the relay.
    auto unknown = input(0);
    unknown.epoch = 77;
    self->send(mesh.experts[1][0], contrib_atom::value, unknown);
    self->send(mesh.relay, contrib_atom::value, unknown);

    // The composer: a forged record (a row past the request's tokens; carried values that do
    // not match its rows) and a forged last-layer output (a stream of the wrong width), each in
    // place of the real one, fail their request, named; a second request under an id in
    // flight is refused.
    const auto forge = [&](const auto& x) {
      self->request(mesh.front, std::chrono::seconds(5), ok_atom::value, x)
        .receive([](ok_atom) {}, [](const caf::error& e) { FAIL(describe(e)); });
    };
    const auto answer_of = [&](std::uint64_t id, std::uint64_t seed) {
      std::string why = "(answered)";
      self->request(mesh.composer, std::chrono::seconds(10), infer_atom::value, id,
                    std::uint64_t{1}, test::request_of(test::random_input(6, 12, seed)))
        .receive([](const infer_result&) {}, [&](const caf::error& e) { why = describe(e); });
      return why;
    };
    const auto forged_record = [&](std::uint64_t id, std::vector<std::int32_t> rows,
                                   std::vector<float> carried) {
      expert_record r; // expert 0.0's on layer 0
      r.request = id;
      r.layer = 0;
      r.expert = 0;
      r.scores = pack(std::vector<float>(6, 0.5f));
      r.rows = pack(rows);
      r.carried = pack(carried);
      forge(r);
      return answer_of(id, id);
    };
    CHECK(forged_record(9001, {2, 1000}, {0.5f, 0.5f})
          == "internal: request 9001: the record of expert 0.0 has row 1000, outside the request's 6 tokens");
    CHECK(forged_record(9002, {-1}, {0.5f})
          == "internal: request 9002: the record of expert 0.0 has row -1, outside the request's 6 tokens");
    CHECK(forged_record(9003, {0, 1}, {0.5f})
          == "internal: request 9003: the record of expert 0.0 has 2 rows but 1 carried values");
    contribution narrow = late; // the carrier of the last layer: the dense expert's output
    narrow.request = 9101;
    narrow.epoch = 1;
    narrow.sender_node = "n1";
    narrow.stream = to_wire(matrix::Zero(6, 15));
    forge(narrow);
    CHECK(answer_of(9101, 3)
          == "internal: request 9101: the carried residual stream is (6, 15), the model's is 16 wide");
    {
      // The first request's messages are held at the front while the second comes.
      const auto hold = [&](bool on) {
        self->request(mesh.front, std::chrono::seconds(5), mute_atom::value, std::uint64_t{9201}, on)
          .receive([](ok_atom) {}, [](const caf::error& e) { FAIL(describe(e)); });
      };
      hold(true);
      const auto x = test::random_input(6, 12, 4);
      auto first = self->request(mesh.composer, std::chrono::seconds(10), infer_atom::value,
                                 std::uint64_t{9201}, std::uint64_t{1}, test::request_of(x));
      CHECK(refusal<infer_result>(self, mesh.composer, infer_atom::value, std::uint64_t{9201},
                                  std::uint64_t{1}, test::request_of(x))
            == "bad_request: request 9201: a request of this id is in flight already");
      hold(false);
      first.receive([&](const infer_result& r) { CHECK(test::compare(*m, x, r) <= 1e-6); },
                    [](const caf::error& e) { FAIL(describe(e)); });
    }
    auto bad_tokens = test::request_of(test::random_input(6, 12, 5));
    bad_tokens.tokens.bytes.resize(bad_tokens.tokens.bytes.size() - 4);
    CHECK(refusal<infer_result>(self, mesh.composer, infer_atom::value, std::uint64_t{9301},
                                std::uint64_t{1}, bad_tokens)
          == "bad_request: request 9301: request tokens: a (6, 12) tensor needs 288 bytes, got 284");
    CHECK(refusal<infer_result>(self, mesh.composer, infer_atom::value, std::uint64_t{9302},
                                std::uint64_t{99}, test::request_of(test::random_input(6, 12, 6)))
          == "not_ready: the composer has no plan for epoch 99");

    // The same actors answer as the reference, twice.
    CHECK(mesh.reference_diff(self, 2, 11) <= 1e-6);
    CHECK(mesh.reference_diff(self, 3, 12) <= 1e-6);
  } // the actor system ends: its printer has written every line
  lines = lines_of(printed.path);
  INFO("printed:\n" << [&] {
    std::string all;
    for (auto& l : lines)
      all += l + "\n";
    return all;
  }());
  const std::vector<std::string> want{"relay n1: a message of unknown epoch 2 dropped",
                                      "1.0: a message of unknown epoch 77 dropped",
                                      "relay n1: a message of unknown epoch 77 dropped"};
  for (const auto& w : want)
    CHECK(std::count(lines.begin(), lines.end(), w) == 1);
  CHECK(lines.size() == want.size());
}

// ---- a language model's attention, answered malformed by its context composer ------------

namespace {

struct context_front_state {
  context_actor real;
  int malformed = 0; ///< 1: a head short; 2: every head a column too wide; 0: as the real one

  static inline const char* name = "test.context_front";
};

/// Stands where the composer's setup names the context composer: hands everything to the real
/// one, or answers a batch of decodes with partials of the wrong heads or shape.
caf::behavior context_front(caf::stateful_actor<context_front_state>* self, context_actor real) {
  self->state.real = std::move(real);
  return {
    [=](create_atom a, const context_spec& spec) { return self->delegate(self->state.real, a, spec); },
    [=](drop_atom a, std::uint64_t id) { return self->delegate(self->state.real, a, id); },
    [=](decode_atom a,
        std::vector<decode_item>& items) -> caf::result<std::vector<attention_reply>> {
      const auto mode = self->state.malformed;
      if (mode == 0)
        return self->delegate(self->state.real, a, std::move(items));
      std::vector<attention_reply> out(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        const auto rows = items[i].q.at(0).rows;
        const auto width = items[i].q.at(0).cols + (mode == 2 ? 1 : 0);
        for (size_t h = 0; h + (mode == 1 ? 1 : 0) < items[i].q.size(); ++h) {
          wire_partial w;
          w.out = to_wire(matrix::Zero(rows, width));
          w.max = pack(std::vector<float>(rows, 0.0f));
          w.sum = pack(std::vector<float>(rows, 1.0f));
          out[i].heads.push_back(std::move(w));
        }
      }
      return out;
    },
    [=](mute_atom, int mode) {
      self->state.malformed = mode;
      return ok_atom::value;
    },
  };
}

constexpr const char* small_lm = R"(
model = { kind = "lm", vocab = 256, context = 64, dim = 16, seed = 4 }
layer = [
  { kind = "attention", heads = 2 },
  { kind = "eoe", experts = 3, hidden = 8, score_columns = 4, mode = "topk", k = 1 },
]
)";

} // namespace

TEST_CASE("a language model's composer fails only the session whose attention comes back with "
          "the wrong heads or shapes, and answers the next session as the in-process decoder",
          "[bad_messages][lm]") {
  auto c = experts::parse_model_config(small_lm, "<test>");
  REQUIRE(c.has_value());
  const auto m = std::make_shared<const experts::model>(test::random_model(*c, 7));
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  const auto agent = sys.spawn(node_agent_behavior, std::string{"n1"}); // hosts the shards
  const auto real = sys.spawn(context_behavior, std::vector<node_agent_actor>{agent}, size_t{0},
                              shard_placement::head);
  const auto front = sys.spawn(context_front, real);
  composer_setup setup;
  setup.contexts = caf::actor_cast<context_actor>(front);
  {
    mini_mesh mesh{sys, m, setup};
    const auto session = [&] {
      std::uint64_t id = 0;
      self->request(mesh.composer, std::chrono::seconds(10), session_atom::value)
        .receive([&](std::uint64_t s) { id = s; }, [](const caf::error& e) { FAIL(describe(e)); });
      return id;
    };
    const std::string text = "bad heads";
    const auto feed = [&](std::uint64_t request, std::uint64_t s, infer_result* out) {
      infer_request req;
      req.session = s;
      req.ids = pack(std::vector<std::uint64_t>(text.begin(), text.end()));
      req.deadline_ms = 10000;
      req.want_record = false;
      std::string why = "(answered)";
      self->request(mesh.composer, std::chrono::seconds(10), infer_atom::value, request,
                    std::uint64_t{1}, req)
        .receive(
          [&](infer_result& r) {
            if (out)
              *out = std::move(r);
          },
          [&](const caf::error& e) { why = describe(e); });
      return why;
    };
    const auto malformed = [&](int mode) {
      self->request(front, std::chrono::seconds(5), mute_atom::value, mode)
        .receive([](ok_atom) {}, [](const caf::error& e) { FAIL(describe(e)); });
    };
    malformed(1);
    CHECK(feed(11, session(), nullptr)
          == "internal: request 11: attention layer 0: the shards' attention has 1 heads, the layer 2");
    malformed(2);
    CHECK(feed(12, session(), nullptr)
          == "internal: request 12: attention layer 0: the shards' attention of head 0 is (9, 9), "
             "9 tokens want (9, 8)");
    malformed(0);
    infer_result r;
    REQUIRE(feed(13, session(), &r) == "(answered)");
    experts::lm_decoder local{*m, experts::kv_layout{4096, 64}};
    const auto want = local.feed(std::vector<std::uint8_t>(text.begin(), text.end()));
    const auto got = from_wire(r.output, "logits");
    REQUIRE(got.rows() == want.rows());
    REQUIRE(got.cols() == want.cols());
    CHECK((got - want).cwiseAbs().maxCoeff() <= 1e-6f);
  }
  caf::anon_send_exit(front, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(real, caf::exit_reason::user_shutdown);
  caf::anon_send(agent, shutdown_atom::value);
}

// ---- the coordinator and node agents that answer what they were not asked ---------------

namespace {

struct fake_agent_state {
  std::shared_ptr<const experts::model> model;
  std::string node;
  std::string lie; ///< "short": spawn nothing; "explicit": spawn no explicit (hot-added) expert
  relay_actor relay;
  std::vector<expert_actor> experts;

  static inline const char* name = "test.fake_agent";
};

/// A node agent that spawns the checkpoint's experts as ordered but answers some orders with
/// fewer experts than ordered, as a broken or hostile process might.
node_agent_actor::behavior_type fake_agent(node_agent_actor::stateful_pointer<fake_agent_state> self,
                                           std::shared_ptr<const experts::model> model,
                                           std::string node, std::string lie) {
  auto& st = self->state;
  st.model = std::move(model);
  st.node = std::move(node);
  st.lie = std::move(lie);
  st.relay = self->spawn(relay_behavior, st.node);
  return {
    [=](spawn_atom, const spawn_order& order) -> caf::result<spawned_node> {
      auto& st = self->state;
      spawned_node out;
      out.node = st.node;
      out.relay = st.relay;
      if (st.lie == "short")
        return out;
      for (auto [layer, id] : order.experts) {
        auto e = self->spawn(expert_behavior,
                             expert_spec{std::make_shared<const experts::ffn_expert>(
                                           st.model->layers[layer].experts[id]),
                                         layer, id, st.node});
        self->send(st.relay, spawn_atom::value, layer, id, e);
        st.experts.push_back(e);
        out.experts.push_back(e);
      }
      return out; // explicit experts: none
    },
    [=](create_atom, const context_spec&, std::uint64_t,
        std::uint64_t) -> caf::result<shard_actor> {
      return make_mesh_error(mesh_errc::bad_request, "no shards here");
    },
    [=](decode_atom, const std::vector<shard_call>&) { return std::vector<attention_reply>{}; },
    [=](retire_atom, std::uint32_t, std::uint32_t) {},
    [=](status_atom) { return self->state.node; },
    [=](clock_atom) { return std::int64_t{0}; },
    [=](clock_atom, std::int64_t) {},
    [=](fence_atom, const std::string&) {},
    [=](shutdown_atom) {
      for (auto& e : self->state.experts)
        self->send_exit(e, caf::exit_reason::user_shutdown);
      self->send_exit(self->state.relay, caf::exit_reason::user_shutdown);
      self->quit(caf::exit_reason::user_shutdown);
    },
  };
}

coordinator_actor coordinator_over(caf::actor_system& sys, const std::string& lie) {
  coordinator_setup setup;
  setup.checkpoint = test::checkpoint();
  setup.model = load_model(setup.checkpoint);
  setup.nodes = {"n1"};
  setup.addresses = {"in-process"};
  setup.agents = {sys.spawn(fake_agent, setup.model, std::string{"n1"}, lie)};
  setup.placement = round_robin_placement(setup.model->config, 1);
  return sys.spawn(coordinator_behavior, std::move(setup));
}

std::string infer_error(caf::scoped_actor& self, const coordinator_actor& c, const matrix& x,
                        infer_result* out = nullptr) {
  std::string why = "(answered)";
  self->request(c, std::chrono::seconds(10), infer_atom::value, test::request_of(x))
    .receive(
      [&](infer_result& r) {
        if (out)
          *out = std::move(r);
      },
      [&](const caf::error& e) { why = describe(e); });
  return why;
}

} // namespace

TEST_CASE("a node agent's answer with fewer experts than ordered is refused by the coordinator, "
          "which goes on",
          "[bad_messages][coordinator]") {
  const auto m = test_model();
  size_t experts = 0;
  for (const auto& l : m->config.layers)
    experts += static_cast<size_t>(l.experts);
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  const auto x = test::random_input(6, 12, 31);
  {
    // The first epoch's order: answered with no experts. The coordinator says so and lives.
    auto c = coordinator_over(sys, "short");
    const auto want = "not_ready: node n1 answered its spawn order with 0 experts for "
                      + std::to_string(experts) + " ordered";
    std::string last;
    CHECK(eventually([&] { return (last = infer_error(self, c, x)) == want; }));
    INFO(last);
    bool alive = false;
    self->request(c, std::chrono::seconds(5), status_atom::value)
      .receive([&](const cluster_status& s) { alive = s.epoch == 0 && s.nodes.size() == 1; },
               [](const caf::error& e) { FAIL(describe(e)); });
    CHECK(alive);
    caf::anon_send(c, shutdown_atom::value);
  }
  {
    // A hot-added expert's order: answered with none. The change fails, the next one is not
    // blocked by it, and the epoch serves as the reference.
    auto c = coordinator_over(sys, "explicit");
    REQUIRE(wait_ready(sys, c, std::chrono::seconds(20)));
    CHECK(refusal<std::uint64_t>(self, c, add_expert_atom::value, std::uint32_t{0},
                                 std::string{"n1"}, std::string{"zero"})
          == "internal: add expert 0.5: node n1 answered with 0 experts for 1 ordered");
    CHECK(refusal<std::uint64_t>(self, c, add_expert_atom::value, std::uint32_t{0},
                                 std::string{"n1"}, std::string{"zero"})
          == "internal: add expert 0.6: node n1 answered with 0 experts for 1 ordered");
    infer_result r;
    REQUIRE(infer_error(self, c, x, &r) == "(answered)");
    CHECK(r.epoch == 1);
    CHECK(test::compare(*m, x, r) <= 1e-6);
    caf::anon_send(c, shutdown_atom::value);
  }
}

TEST_CASE("requests the composer refuses are never stacked with others", "[bad_messages][batcher]") {
  request_batcher b{4096, 1};
  const auto good = [](std::uint32_t rows) {
    return test::request_of(test::random_input(rows, 12, rows));
  };
  REQUIRE(b.add(1, 1, good(2)).has_value()); // the mesh is idle: it goes
  REQUIRE_FALSE(b.add(2, 1, good(3)).has_value()); // busy: it waits to be stacked
  // (2^31, 2^31) floats are 2^64 bytes: times 4 in 64 bits, 0, which the empty bytes match.
  infer_request wraps;
  wraps.tokens.rows = 1u << 31;
  wraps.tokens.cols = 1u << 31;
  auto alone = b.add(3, 1, wraps);
  REQUIRE(alone.has_value());
  CHECK(alone->members.size() == 1);
  CHECK(alone->members[0].id == 3);
  infer_request empty;
  empty.tokens.cols = 12;
  alone = b.add(4, 1, empty);
  REQUIRE(alone.has_value());
  CHECK(alone->members[0].id == 4);
  auto short_bytes = good(2);
  short_bytes.tokens.bytes.pop_back();
  alone = b.add(5, 1, short_bytes);
  REQUIRE(alone.has_value());
  CHECK(alone->members[0].id == 5);
  // The one that waited leaves alone when the first comes back.
  auto next = b.finished();
  REQUIRE(next.has_value());
  CHECK(next->members.size() == 1);
  CHECK(next->members[0].id == 2);
}
