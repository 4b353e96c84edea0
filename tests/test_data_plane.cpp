// The data plane: contribution frames round-trip exactly; every truncation and corruption the
// tests try gets an error naming the field and byte; two data planes in one process deliver
// frames in order to the registered receiver, drop what no receiver takes, and drop (without
// hanging) what goes to an address nobody listens at.

#include "actors/contribution_codec.hpp"
#include "actors/expert_actor.hpp"
#include "actors/data_plane.hpp"
#include "actors/mesh_config.hpp"
#include "actors/wire.hpp"
#include "net/tcp_data_plane.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <sstream>
#include <thread>

using namespace eoe;
using namespace eoe::actors;

namespace {

contribution sample(std::uint64_t request, std::uint32_t rows) {
  contribution c;
  c.request = request;
  c.epoch = 3;
  c.to_layer = 2;
  c.sender = 5;
  c.sender_node = "n2";
  c.deadline_ms = 5000;
  std::vector<std::int32_t> r;
  std::vector<float> s;
  matrix y(rows, 4);
  for (std::uint32_t i = 0; i < rows; ++i) {
    r.push_back(static_cast<std::int32_t>(i * 2));
    s.push_back(0.5f + static_cast<float>(i));
    for (int j = 0; j < 4; ++j)
      y(i, j) = static_cast<float>(request) + static_cast<float>(i) * 0.25f + static_cast<float>(j);
  }
  c.rows = pack(r);
  c.scores = pack(s);
  if (rows > 0)
    c.y = to_wire(y);
  c.stream = to_wire(matrix::Constant(3, 4, 1.5f));
  c.ids = pack(std::vector<std::uint64_t>{7, 8, 9});
  c.trace = 99;
  c.msg = 1234;
  return c;
}

bool same(const contribution& a, const contribution& b) {
  return a.request == b.request && a.epoch == b.epoch && a.to_layer == b.to_layer
         && a.sender == b.sender && a.sender_node == b.sender_node
         && a.deadline_ms == b.deadline_ms && a.rows == b.rows && a.scores == b.scores
         && a.y.rows == b.y.rows && a.y.cols == b.y.cols && a.y.bytes == b.y.bytes
         && a.stream.rows == b.stream.rows && a.stream.cols == b.stream.cols
         && a.stream.bytes == b.stream.bytes && a.ids == b.ids && a.trace == b.trace
         && a.msg == b.msg && a.kind == b.kind;
}

std::string decode_error(std::string_view frame) {
  try {
    (void) decode_contribution(frame);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

/// Collects what the data plane delivers.
struct collected {
  std::vector<contribution> got;
};

using collector_actor = caf::typed_actor<caf::reacts_to<contrib_atom, contribution>,
                                         caf::replies_to<ok_atom>::with<std::vector<contribution>>>;

/// (The unused argument: CAF 0.17 dereferences a null argument tuple for an actor spawned with
/// none, which UBSan reports.)
collector_actor::behavior_type collector(collector_actor::stateful_pointer<collected> self, int) {
  return {
    [=](contrib_atom, contribution& c) { self->state.got.push_back(std::move(c)); },
    [=](ok_atom) { return self->state.got; },
  };
}

} // namespace

TEST_CASE("contribution frames round-trip exactly", "[data_plane]") {
  for (std::uint32_t rows : {0u, 1u, 5u}) {
    const auto c = sample(11, rows);
    CHECK(same(decode_contribution(encode_contribution(c)), c));
  }
  // A score share travels as a contribution of kind 1 and comes back whole.
  score_share s;
  s.request = 4;
  s.epoch = 2;
  s.layer = 3;
  s.expert = 6;
  s.sender_node = "n3";
  s.deadline_ms = 700;
  s.scores = pack(std::vector<float>{0.25f, -1.5f, 3.0f});
  s.trace = 99;
  s.msg = 12;
  const auto c = contribution_of(s);
  CHECK(c.kind == 1);
  const auto back = share_of(decode_contribution(encode_contribution(c)));
  CHECK(back.request == 4);
  CHECK(back.epoch == 2);
  CHECK(back.layer == 3);
  CHECK(back.expert == 6);
  CHECK(back.sender_node == "n3");
  CHECK(back.deadline_ms == 700);
  CHECK(back.scores == s.scores);
  CHECK(back.trace == 99);
  CHECK(back.msg == 12);
}

TEST_CASE("a malformed contribution frame gets an error naming the field and byte",
          "[data_plane]") {
  const auto frame = encode_contribution(sample(11, 2));
  // Every truncation is an error naming a field (and what is left), never a crash.
  for (size_t n = 0; n < frame.size(); ++n) {
    const auto e = decode_error(std::string_view{frame}.substr(0, n));
    INFO("truncated to " << n << " bytes: " << e);
    CHECK(e.starts_with("contribution frame: "));
    CHECK(e != "(no error)");
  }
  CHECK(decode_error(std::string_view{frame}.substr(0, 20))
        == "contribution frame: field epoch at byte 13 needs 8 bytes, 7 are left");
  auto bad = frame;
  bad[1] = 'X';
  CHECK(decode_error(bad) == "contribution frame: bad magic at byte 1 (expected \"EOEC\")");
  bad = frame;
  bad[4] = 9;
  CHECK(decode_error(bad) == "contribution frame: version 9 at byte 4, this build reads version 3");
  bad = frame;
  bad[75] = 7;
  CHECK(decode_error(bad)
        == "contribution frame: kind 7 at byte 75, expected 0 (outputs) or 1 (ranking scores)");
  CHECK(decode_error(frame + "xy")
        == "contribution frame: 2 bytes after the last payload, at byte "
             + std::to_string(frame.size()));
  // y claims (3, 4) over the bytes of (2, 4): refused from the header, before any payload.
  auto c = sample(11, 2);
  c.y.rows = 3;
  CHECK(decode_error(encode_contribution(c))
        == "contribution frame: y is (3, 4) float32 but carries 32 bytes");
  CHECK_THROWS_WITH(decode_header(encode_header(c)),
                    "contribution frame: y is (3, 4) float32 but carries 32 bytes");
  // The header: magic 4, version 1, request 8, epoch 8, to_layer 4, sender 4, name 8 + 2,
  // deadline 4, shapes 16, trace 8, msg 8, kind 1, then the five payload lengths from byte 76.
  const auto header = encode_header(sample(11, 2));
  CHECK(header.size() == 116);
  CHECK(decode_header(header).y.bytes.size() == 2 * 4 * 4);
  CHECK_THROWS_WITH(decode_header(header + "!"),
                    "contribution frame: 1 bytes after the header, at byte 116");
  bad = header;
  const std::uint64_t two_gib = std::uint64_t{1} << 31;
  std::memcpy(bad.data() + 76, &two_gib, 8);
  CHECK_THROWS_WITH(decode_header(bad), "contribution frame: length of rows at byte 76 "
                                        "(2147483648) takes the payloads past 1073741824 bytes");
  // A length that points past the end.
  bad = frame;
  const std::uint64_t huge = ~std::uint64_t{0};
  std::memcpy(bad.data() + 4 + 1 + 8 + 8 + 4 + 4, &huge, 8);
  CHECK(decode_error(bad) == "contribution frame: field sender_node at byte 37 needs "
                               + std::to_string(huge) + " bytes, "
                               + std::to_string(frame.size() - 37) + " are left");
}

TEST_CASE("two data planes deliver frames in order to the receiver of their node",
          "[data_plane]") {
  mesh_config cfg;
  cfg.add_message_type<std::vector<contribution>>("std::vector<contribution>");
  caf::actor_system sys{cfg};
  auto sink = sys.spawn(collector, 0);
  data_planes::register_receiver("nb", caf::actor_cast<caf::actor>(sink));
  // The logs are read once the data planes are gone: their threads write them.
  std::ostringstream log_a, log_b, log_c;
  constexpr int frames = 200;
  const auto frame = [](std::uint64_t request, std::uint32_t rows) {
    return frame_of(caf::make_message(contrib_atom::value, sample(request, rows)));
  };
  {
    net::tcp_data_plane a{"127.0.0.1", 0, log_a}, b{"127.0.0.1", 0, log_b};
    CHECK(b.address().starts_with("127.0.0.1:"));
    for (int i = 0; i < frames; ++i)
      a.send(b.address(), "nb", frame(static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(i % 4)));
    // A frame for a node that does not live there is dropped and reported.
    a.send(b.address(), "elsewhere", frame(1, 1));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (b.delivered() + b.dropped() < frames + 1 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(b.delivered() == frames);
    CHECK(b.dropped() == 1);
  }
  INFO("data plane logs: " << log_a.str() << log_b.str());
  CHECK(log_b.str().find("a frame for node 'elsewhere', which does not live here, dropped")
        != std::string::npos);
  std::vector<contribution> got;
  std::string failure;
  {
    caf::scoped_actor self{sys};
    self->request(sink, std::chrono::seconds(5), ok_atom::value)
      .receive([&](std::vector<contribution>& xs) { got = std::move(xs); },
               [&](const caf::error& e) { failure = caf::to_string(e); });
  }
  anon_send_exit(sink, caf::exit_reason::user_shutdown); // before any REQUIRE can leave
  CHECK(failure.empty());
  REQUIRE(got.size() == frames);
  for (int i = 0; i < frames; ++i)
    CHECK(same(got[i], sample(static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(i % 4))));

  // Nobody listens there: dropped and reported, and send never blocks.
  std::string nowhere;
  {
    net::tcp_data_plane gone{"127.0.0.1", 0, log_c};
    nowhere = gone.address();
  }
  {
    net::tcp_data_plane c{"127.0.0.1", 0, log_c};
    const auto start = std::chrono::steady_clock::now();
    c.send(nowhere, "nb", frame(1, 1));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(100));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (c.dropped() == 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(c.dropped() == 1);
  }
  CHECK(log_c.str().find("cannot connect") != std::string::npos);
}
