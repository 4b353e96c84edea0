// A language model served by a cluster: sessions whose keys and values live in context shard
// actors spread over the nodes, attention run by the composer between the expert layers the
// expert actors run; the logits equal the in-process decoder's (experts/model/lm_decode.hpp).

#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/lm_decode.hpp"
#include "experts/base/model_config.hpp"
#include "experts/base/rng.hpp"
#include "local_cluster_fixture.hpp"
#include "eventually.hpp"
#include "net/client.hpp"
#include "net/lm_client.hpp"
#include "random_model.hpp"
#include "scratch_dir.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>
#include <unistd.h>

using namespace eoe;

namespace {

// Every kind of expert layer a language model takes (EoE experts unfactored, scored on 6 of
// W1's columns, and factored), a recurrent one among them, between attention layers of
// different head counts.
constexpr const char* serving_model = R"(
model = { kind = "lm", vocab = 256, context = 64, dim = 32, seed = 4 }
layer = [
  { kind = "attention", heads = 4 },
  { kind = "eoe", experts = 4, hidden = 24, score_columns = 6, mode = "topk", k = 2 },
  { kind = "attention", heads = 2 },
  { kind = "router", experts = 4, hidden = 16, k = 2 },
  { kind = "hash", experts = 3, hidden = 16, k = 1 },
  { kind = "attention", heads = 4 },
  { kind = "eoe", experts = 3, hidden = 16, rank = 4, mode = "threshold", tau = 0.5, steps = 2 },
]
)";

experts::model serving_lm(std::uint64_t seed) {
  auto c = experts::parse_model_config(serving_model, "<test>");
  REQUIRE(c.has_value());
  return test::random_model(*c, seed);
}

/// The serving model of `seed`, saved in this process's checkpoint `name` under the temp dir
/// (another run's has another pid).
struct saved_lm {
  const experts::model m;
  const test::scratch_dir ckpt; // removed however the case ends, after the cluster

  saved_lm(std::uint64_t seed, const std::string& name)
    : m(serving_lm(seed)),
      ckpt{std::filesystem::temp_directory_path()
           / (name + "_" + std::to_string(::getpid()) + ".ckpt")} {
    REQUIRE(experts::save_checkpoint(m, ckpt.path.string()).has_value());
  }
};

/// A cluster of `nodes` serving it (local_cluster's further arguments after `nodes`).
struct lm_cluster : saved_lm, test::local_cluster {
  template <class... Ts>
  lm_cluster(std::uint64_t seed, const std::string& name, size_t nodes, Ts... more)
    : saved_lm(seed, name), local_cluster(ckpt.path.string(), nodes, more...) {}
};

/// The error text of a request the cluster refuses.
std::string refusal(test::local_cluster& cl, actors::infer_request req) {
  caf::scoped_actor self{cl.sys};
  std::string why = "(answered)";
  self->request(cl.coordinator, std::chrono::seconds(10), actors::infer_atom::value, req)
    .receive([](actors::infer_result&) {},
             [&](caf::error& err) { why = actors::describe(err); });
  return why;
}

} // namespace

TEST_CASE("a 3-node cluster's logits equal the in-process decoder's over a 200-token "
          "generation",
          "[lm][serving]") {
  // Shards of 8 positions: each attention layer's context spreads over the 3 nodes.
  lm_cluster cl{21, "eoe_test_lm_serving", 3, 8};
  const auto& m = cl.m;
  net::cluster_session session{cl.sys, cl.coordinator};
  experts::lm_decoder local{m, experts::kv_layout{8, 64}};
  experts::compared_decoder pair{session, local};
  experts::sampling s;
  s.tokens = 200;
  s.temperature = 0.9;
  s.top_p = 0.95;
  s.seed = 5;
  const auto text = experts::generate(pair, m.config.context, "The cluster ", s);
  CHECK(text.size() == 200);
  INFO("worst |cluster - in-process| = " << pair.worst() << ", restarts " << pair.restarts());
  CHECK(pair.worst() <= 1e-5f);
  // The prompt's 12 rows and one per generated token; past the context (64) it restarted on
  // the last 32 bytes, recomputed in one request.
  CHECK(pair.restarts() >= 4);
  CHECK(pair.rows() >= 12 + 199);
  // The same seed in-process gives the same text.
  CHECK(experts::generate(m, "The cluster ", s, experts::kv_layout{8, 64}) == text);
}

TEST_CASE("a session's logits do not depend on who shares its steps: alone, and among 1 to 64 "
          "sessions prefilling and decoding",
          "[lm][serving][batching]") {
  lm_cluster cl{33, "eoe_test_lm_batching", 3, 8};
  const auto& m = cl.m;
  // The session under test: a prompt in one request, then single tokens, then a chunk.
  const std::string prompt = "Who shares my step? ";
  std::vector<std::vector<std::uint8_t>> feeds{{prompt.begin(), prompt.end()}};
  for (int i = 0; i < 8; ++i)
    feeds.push_back({static_cast<std::uint8_t>('a' + i)});
  feeds.push_back({'m', 'i', 'x', 'e', 'd'});
  experts::lm_decoder local{m, experts::kv_layout{8, 64}};
  std::vector<matrix> want;
  for (const auto& f : feeds)
    want.push_back(local.feed(f));
  for (const int others : {0, 1, 7, 64}) {
    const auto before = cl.status().serving;
    std::atomic<bool> stop{false};
    std::atomic<int> ready{0}, fed{0};
    std::vector<std::thread> crowd;
    std::vector<std::string> errors(static_cast<size_t>(others));
    for (int i = 0; i < others; ++i)
      crowd.emplace_back([&, i] {
        try {
          net::cluster_session s{cl.sys, cl.coordinator};
          experts::rng r{static_cast<std::uint64_t>(100 + i)};
          ++ready;
          while (!stop) {
            // Mostly decode steps, every third a prefill chunk of up to 24 bytes.
            const size_t n = r.next() % 3 == 0 ? 1 + r.next() % 24 : 1;
            if (s.position() + static_cast<std::int64_t>(n) > 48)
              s.restart();
            std::vector<std::uint8_t> bytes;
            while (bytes.size() < n)
              bytes.push_back(static_cast<std::uint8_t>(r.next() % 256));
            if (s.feed(bytes).rows() != static_cast<Eigen::Index>(n))
              throw std::runtime_error("wrong rows");
            ++fed;
          }
        } catch (const std::exception& e) {
          errors[static_cast<size_t>(i)] = e.what();
          ++ready;
        }
      });
    for (int w = 0; w < 3000 && (ready < others || fed < others); ++w)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    float worst = 0;
    {
      net::cluster_session target{cl.sys, cl.coordinator};
      for (size_t i = 0; i < feeds.size(); ++i) {
        const matrix got = target.feed(feeds[i]);
        REQUIRE(got.rows() == want[i].rows());
        worst = std::max(worst, (got - want[i]).cwiseAbs().maxCoeff());
      }
    }
    stop = true;
    for (auto& t : crowd)
      t.join();
    const auto after = cl.status().serving;
    INFO(others << " other sessions: worst |cluster - in-process| = " << worst << "; "
                << (after.steps - before.steps) << " steps ran "
                << (after.step_tokens - before.step_tokens) << " tokens, the largest "
                << after.max_step);
    for (const auto& e : errors)
      CHECK(e.empty());
    CHECK(worst <= 1e-5f);
    CHECK(after.steps > before.steps);
    if (others >= 7) // the crowd shared steps: more tokens than steps
      CHECK(after.step_tokens - before.step_tokens > 2 * (after.steps - before.steps));
  }
  CHECK(cl.status().serving.sessions == 0); // every session closed as its client went
}

TEST_CASE("one failing session fails alone: the others of its steps finish", "[lm][serving][batching]") {
  lm_cluster cl{8, "eoe_test_lm_batch_fail", 2};
  const auto& m = cl.m;
  experts::lm_decoder local{m};
  const std::string text = "one of many";
  const matrix want = local.feed({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  // 16 sessions feed at once while one gives 3000 tokens (12 steps of 256 at least) with a
  // 1 ms deadline: that one fails with its own error, every other answers as the in-process
  // decoder does.
  std::vector<std::thread> crowd;
  std::vector<float> worst(16, -1);
  std::atomic<int> go{0};
  for (int i = 0; i < 16; ++i)
    crowd.emplace_back([&, i] {
      net::cluster_session s{cl.sys, cl.coordinator};
      ++go;
      while (go < 17)
        std::this_thread::yield();
      const matrix got = s.feed({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
      worst[static_cast<size_t>(i)] = (got - want).cwiseAbs().maxCoeff();
    });
  net::cluster_session hasty{cl.sys, cl.coordinator};
  actors::infer_request req;
  req.session = hasty.id();
  req.ids = actors::pack(std::vector<std::uint64_t>(3000, 'x'));
  req.want_record = false;
  req.deadline_ms = 1;
  ++go;
  const auto why = refusal(cl, req);
  for (auto& c : crowd)
    c.join();
  for (auto w : worst)
    CHECK((w >= 0 && w <= 1e-5f));
  INFO(why);
  CHECK(why.find("request ") != std::string::npos);
  CHECK(why.find("within 1 ms") != std::string::npos);
}

TEST_CASE("a served session refuses what does not fit it and names why", "[lm][serving]") {
  lm_cluster cl{3, "eoe_test_lm_refusals", 2, 16};
  const auto& m = cl.m;
  net::cluster_session session{cl.sys, cl.coordinator};
  const std::uint8_t abc[] = {'a', 'b', 'c'};
  REQUIRE(session.feed(abc).rows() == 3);

  actors::infer_request req;
  req.session = session.id();
  req.ids = actors::pack(std::vector<std::uint64_t>{'d'});
  req.position = 2; // the session is at 3
  CHECK(refusal(cl, req).find("session " + std::to_string(session.id())
                              + " is at position 3, the tokens start at 2")
        != std::string::npos);
  req.position = 3;
  req.ids = actors::pack(std::vector<std::uint64_t>{'d', 300});
  CHECK(refusal(cl, req).find("token 1 is 300, not below vocab = 256") != std::string::npos);
  req.ids.clear();
  CHECK(refusal(cl, req).find("0 id bytes") != std::string::npos);
  req.ids = actors::pack(std::vector<std::uint64_t>{'d'});
  req.session = 999;
  CHECK(refusal(cl, req).find("session 999 is not open") != std::string::npos);
  actors::infer_request tensor;
  tensor.tokens = actors::to_wire(matrix::Zero(1, 32));
  CHECK(refusal(cl, tensor).find("is a language model: send byte tokens as ids")
        != std::string::npos);
  // What was accepted is kept: the session goes on where it was.
  const std::uint8_t d[] = {'d'};
  experts::lm_decoder local{m, experts::kv_layout{16, 64}};
  local.feed(abc);
  const matrix want = local.feed(d);
  const matrix got = session.feed(d);
  CHECK((got - want).cwiseAbs().maxCoeff() <= 1e-5f);
  CHECK(session.position() == 4);
}

TEST_CASE("a session that nothing feeds for session_idle closes; one fed meanwhile stays",
          "[lm][serving]") {
  lm_cluster cl{4, "eoe_test_lm_idle", 2, 16, std::chrono::milliseconds(300)};
  net::cluster_session idle{cl.sys, cl.coordinator}, fed{cl.sys, cl.coordinator};
  const std::uint8_t ab[] = {'a', 'b'};
  REQUIRE(idle.feed(ab).rows() == 2);
  // `fed` takes a token every 50 ms for 1.2 s: never 300 ms unfed, while `idle` is.
  for (int i = 0; i < 24; ++i) {
    const std::uint8_t t[] = {static_cast<std::uint8_t>('a' + i % 26)};
    REQUIRE(fed.feed(t).rows() == 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto gone = "session " + std::to_string(idle.id())
                    + " was closed: no request fed it for 300 ms";
  actors::infer_request req;
  req.session = idle.id();
  req.position = 2;
  req.ids = actors::pack(std::vector<std::uint64_t>{'c'});
  CHECK(refusal(cl, req).find(gone) != std::string::npos);
  const std::uint8_t z[] = {'z'};
  CHECK(fed.feed(z).rows() == 1);
  CHECK(fed.position() == 25);
  // A session id that was never opened is told apart from one that expired.
  req.session = 999;
  req.position = 0;
  CHECK(refusal(cl, req).find("session 999 is not open") != std::string::npos);
}

TEST_CASE("a context's first shard lives on the head, its later ones on the other nodes in turn; "
          "the status counts the positions each node holds",
          "[lm][serving]") {
  lm_cluster cl{8, "eoe_test_lm_placement", 3, 8}; // shards of 8 positions, the head n1
  const auto held = [&] {
    auto s = net::status(cl.sys, cl.coordinator);
    REQUIRE(s);
    return s->serving.kv_positions;
  };
  const size_t attention = 3; // the serving model's attention layers
  {
    net::cluster_session a{cl.sys, cl.coordinator};
    const std::string prompt = "twenty bytes of text"; // shards of 8, 8 and 4 per layer
    a.feed(std::span{reinterpret_cast<const std::uint8_t*>(prompt.data()), prompt.size()});
    CHECK(held() == std::vector<std::uint64_t>{8 * attention, 8 * attention, 4 * attention});
    net::cluster_session b{cl.sys, cl.coordinator};
    const std::uint8_t five[] = {'f', 'i', 'v', 'e', '!'};
    b.feed(five); // fits one shard: on the head
    CHECK(held() == std::vector<std::uint64_t>{13 * attention, 8 * attention, 4 * attention});
  }
  // Closed sessions drop their contexts.
  CHECK(test::eventually([&] { return held() == std::vector<std::uint64_t>(3, 0); }));
}

TEST_CASE("a classifier cluster has no sessions", "[lm][serving]") {
  test::local_cluster cl{"", 1};
  CHECK_THROWS_WITH(net::cluster_session(cl.sys, cl.coordinator),
                    Catch::Contains("is not a language model: it has no sessions"));
}
