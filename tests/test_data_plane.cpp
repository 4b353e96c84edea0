// The data plane: contribution frames round-trip exactly; every truncation and corruption the
// tests try gets an error naming the field and byte; two data planes in one process deliver
// frames in order to the registered receiver, drop what no receiver takes, and drop (without
// hanging) what goes to an address nobody listens at. Bytes from a peer that are not frames
// (garbage, truncations, lying lengths, corrupt headers) close only that peer's connection,
// with a log line naming the peer and the fault, while the listener and the other connections
// go on; a malformed share or contribution that reaches an expert fails only its request.

#include "actors/contribution_codec.hpp"
#include "actors/expert_actor.hpp"
#include "actors/data_plane.hpp"
#include "actors/mesh_config.hpp"
#include "actors/wire.hpp"
#include "local_cluster_fixture.hpp"
#include "mesh_model.hpp"
#include "net/tcp_data_plane.hpp"
#include "eventually.hpp"
#include "log_lines.hpp"
#include "raw_socket.hpp"
#include "scratch_dir.hpp"
#include "data_plane_frame.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/actor_ostream.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
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

/// An actor system whose collector is node "nb"'s receiver on the data planes.
struct receiving_node {
  mesh_config cfg;
  caf::actor_system sys{cfg.add_message_type<std::vector<contribution>>("std::vector<contribution>")};
  collector_actor sink = sys.spawn(collector, 0);

  receiving_node() {
    data_planes::register_receiver("nb", caf::actor_cast<caf::actor>(sink));
  }
};

using raw_peer = test::raw_socket;

using test::wire_frame;

using test::eventually;

/// The contributions the sink has collected.
std::vector<contribution> collected_by(caf::actor_system& sys, const collector_actor& sink) {
  std::vector<contribution> got;
  caf::scoped_actor self{sys};
  self->request(sink, std::chrono::seconds(5), ok_atom::value)
    .receive([&](std::vector<contribution>& xs) { got = std::move(xs); },
             [&](const caf::error& e) { FAIL(caf::to_string(e)); });
  return got;
}

/// What a file holds ("" when it does not exist).
std::string file_text(const std::filesystem::path& p) {
  std::ifstream in{p};
  return {std::istreambuf_iterator<char>{in}, {}};
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
  CHECK(c.kind == contribution_kind::score_share);
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
  CHECK(decode_error(bad) == "contribution frame: version 9 at byte 4, this build reads version 4");
  bad = frame;
  bad[76] = 2;
  CHECK(decode_error(bad)
        == "contribution frame: record 2 at byte 76, expected 0 (no decisions wanted) or 1");
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
  // deadline 4, shapes 16, trace 8, msg 8, kind 1, record 1, then the five payload lengths
  // from byte 77.
  const auto header = encode_header(sample(11, 2));
  CHECK(header.size() == 117);
  CHECK(decode_header(header).y.bytes.size() == 2 * 4 * 4);
  CHECK_THROWS_WITH(decode_header(header + "!"),
                    "contribution frame: 1 bytes after the header, at byte 117");
  bad = header;
  const std::uint64_t two_gib = std::uint64_t{1} << 31;
  std::memcpy(bad.data() + 77, &two_gib, 8);
  CHECK_THROWS_WITH(decode_header(bad), "contribution frame: length of rows at byte 77 "
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
  receiving_node nb;
  auto& [cfg, sys, sink] = nb;
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

TEST_CASE("a tensor shape whose byte count passes 2^64 is refused, not taken for empty",
          "[data_plane]") {
  // (2^31, 2^31) float32 is 2^64 bytes: computed in 64 bits it wraps to 0.
  auto c = sample(11, 0);
  c.y.rows = c.y.cols = std::uint32_t{1} << 31;
  CHECK(decode_error(encode_contribution(c))
        == "contribution frame: y is (2147483648, 2147483648) float32 but carries 0 bytes");
  wire_tensor t;
  t.rows = t.cols = std::uint32_t{1} << 31;
  CHECK_THROWS_WITH(from_wire(t, "contribution output"),
                    "contribution output: a (2147483648, 2147483648) tensor needs "
                    "4611686018427387904 floats (over 2^64 bytes), got 0");
  t.rows = 3;
  t.cols = 5;
  t.bytes = std::string(59, '\0');
  CHECK_THROWS_WITH(from_wire(t, "y"), "y: a (3, 5) tensor needs 60 bytes, got 59");
}

TEST_CASE("bytes from a peer that are not frames close only that peer's connection, named on "
          "the log; the listener and the other connections go on",
          "[data_plane]") {
  receiving_node nb;
  auto& [cfg, sys, sink] = nb;
  std::ostringstream log; // read once the data plane is gone: its threads write it
  std::vector<std::string> expected; // log lines, each whole
  std::vector<contribution> got;
  constexpr std::uint32_t big_rows = (1u << 21) + 12345;
  std::uint64_t dropped = 0;
  {
    net::tcp_data_plane plane{"127.0.0.1", 0, log};
    const auto prefix = "data plane " + plane.address() + ": from ";
    // A peer that behaves, connected before the others and used after them.
    raw_peer good{plane.address()};
    REQUIRE(good.send(wire_frame("nb", sample(1, 2))));
    REQUIRE(eventually([&] { return plane.delivered() == 1; }));

    // Each bad peer: its bytes, whether it then ends its side, and the log line it earns.
    const auto frame = wire_frame("nb", sample(2, 2)); // 6 + 2 + 117 header + 120 payloads
    REQUIRE(frame.size() == 6 + 2 + 117 + 120);
    const auto with_header = [](contribution c, auto patch) {
      auto header = encode_header(c);
      patch(header);
      return wire_frame("nb", header, "");
    };
    const auto at = [](std::string& h, size_t offset, std::uint64_t v) {
      std::memcpy(h.data() + offset, &v, 8);
    };
    struct bad_peer {
      std::string what, bytes;
      bool ends;        // the peer ends its side (else the data plane closes on its own)
      std::string line; // after "from <peer>: "
    };
    const std::vector<bad_peer> bad{
      {"an HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false,
       "a frame header of 542393671 bytes (bytes 0-3 of the frame; allowed: 1 to 1048576); "
       "connection closed"},
      {"a zero header length", std::string(6, '\0'), false,
       "a frame header of 0 bytes (bytes 0-3 of the frame; allowed: 1 to 1048576); "
       "connection closed"},
      {"a prefix cut short", frame.substr(0, 3), true,
       "the connection ended inside a frame, in its 6-byte prefix after 3 bytes; frame dropped"},
      {"a header cut short", frame.substr(0, 6 + 50), true,
       "the connection ended inside a frame, in its node name and header after 50 of 119 "
       "bytes; frame dropped"},
      {"a payload cut short", frame.substr(0, 6 + 119 + 8 + 8 + 10), true,
       "the connection ended inside a frame, in payload y after 10 of 32 bytes; frame dropped"},
      {"bad magic", wire_frame("nb", "XXXX" + std::string(113, '\0'), ""), false,
       "contribution frame: bad magic at byte 0 (expected \"EOEC\"); connection closed"},
      {"a payload length past the limit",
       with_header(sample(3, 2), [&](std::string& h) { at(h, 77, std::uint64_t{1} << 31); }),
       false,
       "contribution frame: length of rows at byte 77 (2147483648) takes the payloads past "
       "1073741824 bytes; connection closed"},
      {"a shape its bytes do not fill", with_header(sample(4, 2), [](std::string& h) {
         const std::uint32_t rows = 3;
         std::memcpy(h.data() + 4 + 1 + 8 + 8 + 4 + 4 + 8 + 2 + 4, &rows, 4);
       }),
       false, "contribution frame: y is (3, 4) float32 but carries 32 bytes; connection closed"},
    };
    for (const auto& b : bad) {
      INFO(b.what);
      raw_peer p{plane.address()};
      REQUIRE(p.send(b.bytes));
      if (b.ends)
        p.finish();
      CHECK(p.wait_closed());
      expected.push_back(prefix + p.name() + ": " + b.line);
    }
    {
      // The header of an empty contribution with rows 2^30 bytes long (the whole limit, so
      // allowed) and 1000 of them sent: read as they come, never allocated up front.
      contribution c;
      c.sender_node = "n2";
      auto header = encode_header(c);
      const std::uint64_t gib = std::uint64_t{1} << 30;
      std::memcpy(header.data() + header.size() - 5 * 8, &gib, 8);
      raw_peer p{plane.address()};
      REQUIRE(p.send(wire_frame("nb", header, std::string(1000, 'r'))));
      p.finish();
      CHECK(p.wait_closed());
      expected.push_back(prefix + p.name()
                         + ": the connection ended inside a frame, in payload rows after 1000 "
                           "of 1073741824 bytes; frame dropped");
    }
    {
      // A node name that is not text: named escaped, the frame dropped, the connection kept.
      raw_peer p{plane.address()};
      const std::string name{"n\xFF\n\x01", 4};
      REQUIRE(p.send(wire_frame(name, sample(5, 1))));
      REQUIRE(eventually([&] { return plane.dropped() == 1; }));
      REQUIRE(p.send(wire_frame("nb", sample(6, 1))));
      REQUIRE(eventually([&] { return plane.delivered() == 2; }));
      expected.push_back(prefix + p.name()
                         + ": a frame for node 'n\\xFF\\x0A\\x01', which does not live here, "
                           "dropped");
    }
    // The first peer's connection was not touched; a new one is served as well.
    REQUIRE(good.send(wire_frame("nb", sample(7, 3))));
    REQUIRE(eventually([&] { return plane.delivered() == 3; }));
    raw_peer late{plane.address()};
    REQUIRE(late.send(wire_frame("nb", sample(8, 0))));
    REQUIRE(eventually([&] { return plane.delivered() == 4; }));
    // A payload past the 16 MiB read at once (y: 32 MiB and more) grows as it comes, whole.
    REQUIRE(late.send(wire_frame("nb", sample(9, big_rows))));
    REQUIRE(eventually([&] { return plane.delivered() == 5; }));
    got = collected_by(sys, sink);
    dropped = plane.dropped();
  }
  data_planes::register_receiver("nb", caf::actor{});
  anon_send_exit(sink, caf::exit_reason::user_shutdown);
  CHECK(dropped == 1);
  REQUIRE(got.size() == 5);
  CHECK(same(got[0], sample(1, 2)));
  CHECK(same(got[1], sample(6, 1)));
  CHECK(same(got[2], sample(7, 3)));
  CHECK(same(got[3], sample(8, 0)));
  CHECK(got[4].y.bytes.size() == std::size_t{big_rows} * 16);
  CHECK(same(got[4], sample(9, big_rows)));
  test::check_lines_once("data plane log", log.str(), expected);
}

TEST_CASE("frames that arrive together, or a byte at a time, are read whole and in order",
          "[data_plane]") {
  receiving_node nb;
  auto& [cfg, sys, sink] = nb;
  std::ostringstream log;
  std::vector<contribution> got;
  {
    net::tcp_data_plane plane{"127.0.0.1", 0, log};
    raw_peer p{plane.address()};
    // One send: small frames around one whose payload (80 KB) passes the 64 KiB receive
    // buffer, so that its bytes come partly from the buffer and partly straight into place.
    REQUIRE(p.send(wire_frame("nb", sample(1, 2)) + wire_frame("nb", sample(2, 5000))
                   + wire_frame("nb", sample(3, 1))));
    REQUIRE(eventually([&] { return plane.delivered() == 3; }));
    const auto frame = wire_frame("nb", sample(4, 3));
    for (char byte : frame)
      REQUIRE(p.send(std::string_view{&byte, 1}));
    REQUIRE(eventually([&] { return plane.delivered() == 4; }));
    got = collected_by(sys, sink);
  }
  data_planes::register_receiver("nb", caf::actor{});
  anon_send_exit(sink, caf::exit_reason::user_shutdown);
  REQUIRE(got.size() == 4);
  CHECK(same(got[0], sample(1, 2)));
  CHECK(same(got[1], sample(2, 5000)));
  CHECK(same(got[2], sample(3, 1)));
  CHECK(same(got[3], sample(4, 3)));
  CHECK(log.str().empty());
}

TEST_CASE("a malformed share or contribution that reaches an expert over the data plane fails "
          "only its request, named; the expert answers the next request exactly",
          "[data_plane]") {
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  std::ostringstream log;
  auto plane = std::make_shared<net::tcp_data_plane>("127.0.0.1", 0, log);
  data_planes::install(plane); // before the cluster: its relay takes frames for "n1"
  const auto printed_to = std::filesystem::temp_directory_path()
                          / ("eoe_test_data_plane_" + std::to_string(::getpid()) + ".out");
  const test::scratch_dir printed_file{printed_to}; // however the case ends
  std::vector<std::string> failures;
  std::vector<double> diffs;
  std::uint64_t first = 0;
  {
    test::local_cluster cl{test::checkpoint(), 1};
    caf::actor_ostream::redirect_all(cl.sys, printed_to.string()); // the experts' notes
    caf::scoped_actor self{cl.sys};
    const auto run = [&](std::uint64_t seed, std::uint32_t deadline_ms) {
      const auto x = test::random_input(6, 12, seed);
      infer_result result;
      self->request(cl.coordinator, std::chrono::seconds(30), infer_atom::value,
                    test::request_of(x, deadline_ms))
        .receive(
          [&](infer_result& r) {
            result = std::move(r);
            diffs.push_back(test::compare(*m, x, result));
          },
          [&](const caf::error& err) { failures.push_back(describe(err)); });
      return result;
    };
    const auto r = run(21, 10000);
    first = r.request;
    // Each forged frame is in the relay's mailbox before its request is admitted, so the
    // experts see it before the real one from the same sender (which they then ignore).
    raw_peer peer{plane->address()};
    std::uint64_t frames = 0;
    const auto forge = [&](const contribution& c) {
      REQUIRE(peer.send(wire_frame("n1", c)));
      const auto want = ++frames;
      REQUIRE(eventually([&] { return plane->delivered() == want; }));
    };
    // Request first + 1: expert 1.0's share of layer 1 (top-k over affinity mixes: its
    // experts share scores) has 2 scores for 6 tokens.
    score_share share;
    share.request = first + 1;
    share.epoch = r.epoch;
    share.layer = 1;
    share.expert = 0;
    share.sender_node = "n1";
    share.deadline_ms = 10000;
    share.scores = pack(std::vector<float>{1.0f, 2.0f});
    forge(contribution_of(share));
    run(22, 500);
    // Request first + 2: sender 1's contribution to layer 1 has 2 rows and 1 score.
    auto c = sample(first + 2, 2);
    c.epoch = r.epoch;
    c.to_layer = 1;
    c.sender = 1;
    c.sender_node = "n1";
    c.scores = pack(std::vector<float>{0.5f});
    c.y = to_wire(matrix::Constant(2, 16, 0.25f));
    c.stream = {};
    c.ids.clear();
    forge(c);
    run(23, 500);
    // Request first + 3: a share of 7 bytes cannot be read; it is dropped and the real one,
    // which comes next, is taken: the request completes.
    share.request = first + 3;
    share.scores = std::string(7, '\x01');
    forge(contribution_of(share));
    run(24, 10000);
    run(25, 10000); // and the next one, untouched
  }
  // Read once the actor system is gone: its printer writes the file, and flushes at the end.
  const auto printed = file_text(printed_to);
  std::filesystem::remove(test::checkpoint()); // only this test of the file reads it
  data_planes::install(nullptr);
  data_planes::register_receiver("n1", caf::actor{});
  plane.reset();
  INFO("experts' output:\n" << printed << "data plane log:\n" << log.str());
  REQUIRE(failures.size() == 2);
  const auto id = [&](std::uint64_t k) { return std::to_string(first + k); };
  CHECK(failures[0] == "deadline_exceeded: request " + id(1)
                         + ": layer 1: no decision from experts 1.1, 1.2, 1.3 within 500 ms");
  CHECK(failures[1] == "deadline_exceeded: request " + id(2)
                         + ": layer 1: no answer from experts 1.0, 1.1, 1.2, 1.3 within 500 ms");
  REQUIRE(diffs.size() == 3); // requests first, first + 3 and first + 4
  for (auto d : diffs)
    CHECK(d <= 1e-6);
  // Each expert that got a malformed input names it, its request and itself, once.
  std::vector<std::string> want;
  for (int e = 1; e <= 3; ++e)
    want.push_back("1." + std::to_string(e) + ": request " + id(1)
                   + ": the ranking scores of expert 1.0 are 2 values, the request has 6 tokens");
  for (int e = 0; e <= 3; ++e)
    want.push_back("1." + std::to_string(e) + ": request " + id(2)
                   + ": the contribution of sender 1: 2 rows but 1 scores");
  for (int e = 1; e <= 3; ++e)
    want.push_back("1." + std::to_string(e) + ": request " + id(3)
                   + ": the ranking scores of expert 1.0: 7 bytes is not a whole number of "
                     "4-byte values");
  std::vector<std::string> lines;
  std::istringstream in{printed};
  for (std::string l; std::getline(in, l);)
    lines.push_back(l);
  for (const auto& w : want)
    CHECK(std::count(lines.begin(), lines.end(), w) == 1);
  CHECK(lines.size() == want.size());
  CHECK(log.str().empty()); // the data plane took every frame
}
