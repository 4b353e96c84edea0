// Cluster links over TLS ([tls] in a cluster file). Certificates are made here with the
// openssl command: a CA, certificates it signs (one with an encrypted key), and an unrelated
// CA with a certificate of its own. Checked: every unusable [tls] setting is an error naming
// the key and the file, before a node starts; the data plane and the trace stream carry their
// bytes encrypted (a recording proxy of the test's own sees them plain without TLS and not
// with it); 3 node processes over TLS equal the reference, and a client talking to the head
// through the proxy puts none of its request on the wire (a plaintext cluster does); a
// client or node of the other CA, or without TLS, is refused with the reason, and the cluster
// keeps serving; a node of the cluster's CA joins over TLS.

#include "actors/contribution_codec.hpp"
#include "actors/data_plane.hpp"
#include "actors/mesh_errc.hpp"
#include "follow.hpp"
#include "mesh_model.hpp"
#include "net/client.hpp"
#include "net/cluster_config.hpp"
#include "net/process_cluster.hpp"
#include "node_processes.hpp"
#include "net/tcp_data_plane.hpp"
#include "net/tls_context.hpp"
#include "net/trace_collector.hpp"
#include "net/trace_sink.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <optional>
#include <fstream>
#include <mutex>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace eoe;
using namespace eoe::actors;
using namespace eoe::test;
namespace fs = std::filesystem;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

/// The case's folder, made afresh (a scratch_dir takes it at once, to remove at the end).
fs::path temp_dir(const std::string& what) {
  auto dir = fs::temp_directory_path() / ("eoe_test_tls_" + what + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

/// The case's folder (removed however the case ends: declare it first) with the test's
/// certificates, made with the openssl command (P-256 keys: fast to make).
struct test_pki {
  const scratch_dir scratch;
  const fs::path dir = scratch.path;
  const std::string passphrase = "eoe test passphrase";

  explicit test_pki(const std::string& what) : scratch{temp_dir(what)} {
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
    auto signed_by = [&](const std::string& ca, const std::string& name) {
      sh("openssl req " + ec + " -keyout " + name + ".key -out " + name + ".csr -subj '/CN="
         + name + "'");
      sh("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca
         + ".key -CAcreateserial -days 2 -out " + name + ".pem");
    };
    sh("openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -subj '/CN=eoe test CA'");
    signed_by("ca", "node");
    signed_by("ca", "client");
    sh("openssl pkey -in node.key -aes256 -passout 'pass:" + passphrase + "' -out node.enc.key");
    sh("openssl req -x509 " + ec + " -keyout other_ca.key -out other_ca.pem -subj '/CN=other CA'");
    signed_by("other_ca", "intruder");
  }

  void sh(const std::string& cmd) const {
    const auto full = "cd '" + dir.string() + "' && " + cmd + " >> openssl.log 2>&1";
    INFO(full);
    REQUIRE(std::system(full.c_str()) == 0);
  }

  std::string path(const std::string& name) const {
    return (dir / name).string();
  }

  /// What the nodes use: the encrypted key, so that its passphrase is exercised too.
  net::tls_settings node() const {
    return {path("node.pem"), path("node.enc.key"), path("ca.pem"), passphrase};
  }
  net::tls_settings client() const {
    return {path("client.pem"), path("client.key"), path("ca.pem"), ""};
  }
  /// Of the other CA, trusting only it.
  net::tls_settings intruder() const {
    return {path("intruder.pem"), path("intruder.key"), path("other_ca.pem"), ""};
  }
  /// Of the other CA, but trusting the cluster's: only the other side can refuse it.
  net::tls_settings intruder_trusting_us() const {
    return {path("intruder.pem"), path("intruder.key"), path("ca.pem"), ""};
  }
};

/// A TCP forwarder of the test's own, put between two processes: it records every byte that
/// passes, both ways, so that the test can look for plaintext on the wire. `trickle` > 0:
/// it passes what it reads on in pieces of that many bytes, 1 ms apart, so that the reader
/// at either end sees TLS records arrive in parts.
class recording_proxy {
public:
  explicit recording_proxy(std::uint16_t target, size_t trickle = 0)
      : target_(target), trickle_(trickle) {
    const tcp::endpoint at{asio::ip::make_address("127.0.0.1"), 0};
    acceptor_.open(at.protocol());
    acceptor_.bind(at);
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~recording_proxy() {
    asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      io_.stop();
    });
    thread_.join();
  }

  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

  std::string recorded() const {
    std::lock_guard lock{mu_};
    return bytes_;
  }

  bool saw(std::string_view needle) const {
    return recorded().find(needle) != std::string::npos;
  }

private:
  struct session {
    tcp::socket a, b;
    std::array<char, 16384> from_a{}, from_b{};
    explicit session(asio::io_context& io) : a(io), b(io) {}
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec)
        return;
      auto ss = std::make_shared<session>(io_);
      ss->a = std::move(s);
      ss->b.async_connect({asio::ip::make_address("127.0.0.1"), target_},
                          [this, ss](boost::system::error_code ec) {
                            if (ec)
                              return;
                            pump(ss, ss->a, ss->b, ss->from_a);
                            pump(ss, ss->b, ss->a, ss->from_b);
                          });
      accept();
    });
  }

  void pump(std::shared_ptr<session> ss, tcp::socket& from, tcp::socket& to,
            std::array<char, 16384>& buf) {
    from.async_read_some(asio::buffer(buf), [this, ss, &from, &to, &buf](
                                              boost::system::error_code ec, size_t n) {
      if (ec) {
        boost::system::error_code ignored;
        to.shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      {
        std::lock_guard lock{mu_};
        bytes_.append(buf.data(), n);
      }
      pass_on(ss, from, to, buf, 0, n);
    });
  }

  /// Writes buf[at, n) to `to` (in pieces when trickling), then reads `from` again.
  void pass_on(std::shared_ptr<session> ss, tcp::socket& from, tcp::socket& to,
               std::array<char, 16384>& buf, size_t at, size_t n) {
    const size_t piece = trickle_ > 0 ? std::min(trickle_, n - at) : n - at;
    asio::async_write(to, asio::buffer(buf.data() + at, piece),
                      [this, ss, &from, &to, &buf, at, piece, n](boost::system::error_code ec,
                                                                 size_t) {
                        if (ec)
                          return;
                        if (at + piece == n)
                          return pump(ss, from, to, buf);
                        auto pause = std::make_shared<asio::steady_timer>(
                          io_, std::chrono::milliseconds(1));
                        pause->async_wait([this, ss, &from, &to, &buf, at, piece, n,
                                           pause](boost::system::error_code) {
                          pass_on(ss, from, to, buf, at + piece, n);
                        });
                      });
  }

  std::uint16_t target_;
  size_t trickle_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  mutable std::mutex mu_;
  std::string bytes_;
  std::thread thread_;
};

std::uint16_t port_of(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

std::string tls_table(const net::tls_settings& t) {
  std::string out = "\n[tls]\ncertificate = \"" + t.certificate + "\"\nkey = \"" + t.key
                    + "\"\nca = \"" + t.ca + "\"\n";
  if (!t.passphrase.empty())
    out += "passphrase = \"" + t.passphrase + "\"\n";
  return out;
}

/// A cluster file of `nodes` nodes on loopback from port `first`, with `extra` lines.
std::string write_cluster(const fs::path& dir, const std::string& name, int nodes, int first,
                          const std::string& extra) {
  std::ofstream out{dir / (name + ".toml")};
  out << "[cluster]\nname = \"" << name << "\"\ncheckpoint = \"" << checkpoint()
      << "\"\nhead = \"n1\"\n"
      // Not a test of failure detection: a node starved of CPU by the tests beside it (TLS
      // handshakes of 3 processes on 2 cores) is not declared lost after the default 1 s.
      << "suspect_after_ms = 4000\n"
      << extra << "\n";
  for (int i = 0; i < nodes; ++i)
    out << "\n[[node]]\nname = \"n" << i + 1 << "\"\nport = " << first + i << "\n";
  return (dir / (name + ".toml")).string();
}

/// One request of `rows` tokens through `coord`; its answer checked against the reference.
/// Returns the request's token bytes (what must not show on an encrypted wire).
std::string checked_request(caf::actor_system& sys, const coordinator_actor& coord,
                            std::uint64_t seed, Eigen::Index rows = 4) {
  auto m = experts::load_checkpoint(checkpoint());
  REQUIRE(m.has_value());
  const auto x = random_input(rows, 12, seed);
  auto req = request_of(x);
  const auto bytes = req.tokens.bytes;
  auto r = net::infer(sys, coord, std::move(req), std::chrono::seconds(20));
  if (!r)
    FAIL("request " << seed << ": " << describe(r.error()));
  CHECK(compare(*m, x, *r) <= 1e-6);
  return bytes;
}

std::string connect_error(const net::tls_settings& tls, const std::string& address) {
  net::client_system client{tls};
  const auto start = std::chrono::steady_clock::now();
  auto coord = net::connect(client.sys, address);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(15));
  if (coord)
    return "(connected)";
  return describe(coord.error());
}

} // namespace

TEST_CASE("[tls] settings: each missing, unreadable or mismatched one is an error naming the "
          "key and the file",
          "[tls][config]") {
  const test_pki pki{"config"}; // its folder removed however the case ends
  const auto& dir = pki.dir;
  const auto file = (dir / "c.toml").string();
  auto error_of = [&](const std::string& tls) {
    const auto text = "[[node]]\nname = \"n1\"\nport = 4401\n\n[tls]\n" + tls;
    auto c = net::parse_cluster_config(text, file);
    return c ? std::string{"(no error)"} : c.error().message;
  };
  const auto d = dir.string() + "/";
  // Relative paths are the cluster file's folder's; the encrypted key opens with its passphrase.
  {
    auto c = net::parse_cluster_config("[[node]]\nname = \"n1\"\nport = 4401\n\n[tls]\n"
                                       "certificate = \"node.pem\"\nkey = \"node.enc.key\"\n"
                                       "ca = \"ca.pem\"\npassphrase = \""
                                         + pki.passphrase + "\"\n",
                                       file);
    REQUIRE(c.has_value());
    CHECK(c->tls == pki.node());
    CHECK(net::check_tls(pki.client()).empty());
  }
  // All three or none.
  CHECK(error_of("certificate = \"node.pem\"\n")
        == file + ":5:1: tls.key: missing; expected the PEM file of its private key ([tls] takes "
                  "certificate, key and ca together)\n"
          + file + ":5:1: tls.ca: missing; expected the PEM certificates of the cluster's CA "
                   "([tls] takes certificate, key and ca together)");
  CHECK(error_of("key = \"node.key\"\nca = \"ca.pem\"\n")
        == file + ":5:1: tls.certificate: missing; expected this node's PEM certificate ([tls] "
                  "takes certificate, key and ca together)");
  // Files that are not there, not files, not PEM, or not of each other.
  CHECK(error_of("certificate = \"missing.pem\"\nkey = \"node.key\"\nca = \"ca.pem\"\n")
        == file + ":6:15: tls.certificate: cannot read \"" + d
             + "missing.pem\": No such file or directory");
  CHECK(error_of("certificate = \"node.pem\"\nkey = \"node.key\"\nca = \"" + d + "\"\n")
        == file + ":8:6: tls.ca: cannot read \"" + d + "\": it is a directory");
  CHECK(error_of("certificate = \"node.pem\"\nkey = \"ca.pem\"\nca = \"ca.pem\"\n")
        == file + ":7:7: tls.key: \"" + d + "ca.pem\" holds no PEM private key");
  CHECK(error_of("certificate = \"node.key\"\nkey = \"node.key\"\nca = \"ca.pem\"\n")
        == file + ":6:15: tls.certificate: \"" + d + "node.key\" holds no PEM certificate");
  CHECK(error_of("certificate = \"node.pem\"\nkey = \"client.key\"\nca = \"ca.pem\"\n")
        == file + ":7:7: tls.key: \"" + d + "client.key\" is not the key of the certificate \"" + d
             + "node.pem\"");
  CHECK(error_of("certificate = \"node.pem\"\nkey = \"node.enc.key\"\nca = \"ca.pem\"\n")
        == file + ":7:7: tls.key: \"" + d + "node.enc.key\" is encrypted and no passphrase is given");
  CHECK(error_of("certificate = \"node.pem\"\nkey = \"node.enc.key\"\nca = \"ca.pem\"\n"
                 "passphrase = \"wrong\"\n")
        == file + ":9:14: tls.passphrase: does not decrypt \"" + d + "node.enc.key\"");
  CHECK(error_of("certificate = \"intruder.pem\"\nkey = \"intruder.key\"\nca = \"ca.pem\"\n")
        == file + ":6:15: tls.certificate: \"" + d + "intruder.pem\" does not verify against the ca \""
             + d + "ca.pem\" as a TLS server: unable to get local issuer certificate");
  CHECK(error_of("certificate = \"\"\nkey = \"node.key\"\nca = \"ca.pem\"\ncrl = \"x\"\n")
        == file + ":6:15: tls.certificate: expected the path of this node's PEM certificate, got \"\"\n"
          + file + ":9:1: tls.crl: unknown key in [tls] (expected one of: certificate, key, ca, "
                   "passphrase)");

  // Reported before a node starts, and by the clients' flags the same way.
  const auto bad = (dir / "bad.toml").string();
  std::ofstream{bad} << "[[node]]\nname = \"n1\"\nport = 4401\n\n[tls]\ncertificate = \"node.pem\"\n"
                        "key = \"gone.key\"\nca = \"ca.pem\"\n";
  auto [rc, out] = run_eoe("node --cluster " + bad + " --name n1");
  CHECK(rc == 1);
  CHECK(out == "eoe: " + bad + ":7:7: tls.key: cannot read \"" + d
                 + "gone.key\": No such file or directory\n");
  std::tie(rc, out) = run_eoe("infer --connect 127.0.0.1:1 --tls-ca " + pki.path("ca.pem"));
  CHECK(rc == 1);
  CHECK(out == "eoe: --tls-ca, --tls-cert and --tls-key go together: --tls-cert and --tls-key "
               "missing\n");
  std::tie(rc, out) = run_eoe("status --connect 127.0.0.1:1 --tls-ca " + pki.path("ca.pem")
                              + " --tls-cert " + pki.path("node.pem") + " --tls-key "
                              + pki.path("node.enc.key"));
  CHECK(rc == 1);
  CHECK(out == "eoe: --tls-key: \"" + d + "node.enc.key\" is encrypted and no passphrase is given\n");
}

TEST_CASE("the data plane over TLS: frames arrive whole, the wire shows none of their bytes, "
          "and a peer of another CA is refused",
          "[tls][data_plane]") {
  const test_pki pki{"data_plane"}; // its folder removed however the case ends
  mesh_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  data_planes::register_receiver("nb", caf::actor_cast<caf::actor>(self));
  contribution c;
  c.request = 42;
  c.sender_node = "sender-with-a-distinctive-name";
  c.deadline_ms = 5000;
  c.rows = pack(std::vector<std::int32_t>{0, 1, 2});
  c.scores = pack(std::vector<float>{1.f, 2.f, 3.f});
  c.y = to_wire(random_input(3, 64, 5));
  c.stream = to_wire(random_input(3, 64, 6));
  const auto payload = c.y.bytes.substr(0, 64);
  auto frame = frame_of(caf::make_message(contrib_atom::value, c));
  // The next frame delivered here, or none within the time.
  auto next_frame = [&](std::chrono::milliseconds within = std::chrono::seconds(5)) {
    std::optional<contribution> got;
    self->receive([&](contrib_atom, contribution& x) { got = std::move(x); },
                  caf::after(within) >> [] {});
    return got;
  };
  auto wait_for = [](auto&& done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return done();
  };
  for (bool tls : {false, true}) {
    INFO((tls ? "TLS" : "plaintext"));
    std::ostringstream log_a, log_b;
    const auto credentials = tls ? pki.node() : net::tls_settings{};
    net::tcp_data_plane a{"127.0.0.1", 0, log_a, credentials}, b{"127.0.0.1", 0, log_b, credentials};
    recording_proxy proxy{port_of(b.address())};
    a.send(proxy.address(), "nb", frame);
    auto got = next_frame();
    REQUIRE(got);
    CHECK(got->request == 42);
    CHECK(got->y.bytes == c.y.bytes);
    CHECK(got->stream.bytes == c.stream.bytes);
    CHECK(proxy.recorded().size() > c.y.bytes.size());
    CHECK(proxy.saw(payload) == !tls);
    CHECK(proxy.saw(c.sender_node) == !tls);
  }
  // Peers of the other CA: one that does not trust us gives up at its handshake, one that does
  // is refused by ours; nothing is delivered, both ends say why, and b goes on serving.
  std::ostringstream log_a, log_b, log_x, log_y;
  {
    net::tcp_data_plane a{"127.0.0.1", 0, log_a, pki.node()}, b{"127.0.0.1", 0, log_b, pki.node()};
    net::tcp_data_plane x{"127.0.0.1", 0, log_x, pki.intruder()};
    net::tcp_data_plane y{"127.0.0.1", 0, log_y, pki.intruder_trusting_us()};
    x.send(b.address(), "nb", frame);
    y.send(b.address(), "nb", frame);
    CHECK(wait_for([&] { return x.dropped() == 1 && y.dropped() == 1; }));
    a.send(b.address(), "nb", frame);
    auto got = next_frame();
    REQUIRE(got);
    CHECK(got->request == 42);
    CHECK(wait_for([&] { return b.delivered() == 1; }));
    CHECK_FALSE(next_frame(std::chrono::milliseconds(200))); // only a's
  }
  INFO(log_b.str() << log_x.str() << log_y.str());
  CHECK_THAT(log_x.str(), Catch::Contains(": the TLS handshake failed: certificate verify failed")
                            && Catch::Contains("1 frame(s) dropped"));
  CHECK_THAT(log_y.str(), Catch::Contains(": the peer refused the TLS link: ")
                            && Catch::Contains("1 frame(s) dropped"));
  CHECK_THAT(log_b.str(), Catch::Contains("the TLS handshake with a peer at 127.0.0.1:")
                            && Catch::Contains("(its certificate: unable to get local issuer "
                                               "certificate); connection closed"));
}

TEST_CASE("the trace stream over TLS: a follower of the cluster's CA gets every line, the wire "
          "shows none, a follower without TLS gets none",
          "[tls][trace]") {
  const test_pki pki{"trace"}; // its folder removed however the case ends
  for (bool tls : {false, true}) {
    INFO((tls ? "TLS" : "plaintext"));
    const auto credentials = tls ? pki.node() : net::tls_settings{};
    std::optional<net::trace_collector> collector{std::in_place, "127.0.0.1", 0, credentials};
    const auto at = "127.0.0.1:" + std::to_string(collector->port());
    recording_proxy proxy{collector->port()};
    std::ostringstream live;
    std::uint64_t shown = 0;
    std::atomic<bool> done{false};
    std::thread follower([&] {
      shown = trace_tool::follow(at, live, 3, credentials);
      done = true;
    });
    std::uint64_t stranger = 99;
    std::ostringstream nothing;
    if (tls)
      stranger = trace_tool::follow(at, nothing, 1); // the collector closes it: no lines
    {
      // One event every 20 ms until the follower (registered at some point) has seen three.
      net::file_trace_sink sink{"", proxy.address(), credentials};
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      for (std::uint64_t i = 0; !done && std::chrono::steady_clock::now() < until; ++i) {
        trace_event e;
        e.trace = 7;
        e.request = i;
        e.name = "contrib";
        e.msg = 100 + i;
        e.node = "node-with-a-distinctive-name";
        e.actor = "relay";
        e.t_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i);
        sink.record(e);
        sink.flush();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      CHECK(sink.stream_dropped() == 0);
    }
    if (!done)
      collector.reset(); // closes the follower, which must not hold the test
    follower.join();
    CHECK(shown == 3);
    CHECK_THAT(live.str(), Catch::Contains("node-with-a-distinctive-name"));
    CHECK(proxy.saw("node-with-a-distinctive-name") == !tls);
    CHECK(proxy.recorded().size() > 100);
    if (tls)
      CHECK(stranger == 0);
  }
}

TEST_CASE("3 node processes over TLS equal the reference; the wire to the head shows none of a "
          "request (a plaintext cluster's does); other CAs and plaintext are refused with the "
          "reason while the cluster serves on; a node of the CA joins",
          "[tls][processes]") {
  // One client system at a time: CAF 0.17 gives every actor system of a process the same node
  // id, and a head that sees one node id on two links loses track of both.
  const test_pki pki{"cluster"}; // its folder removed however the case ends
  const auto& dir = pki.dir;
  const int base = base_port();
  const std::string type_name = "infer_request"; // CAF puts the message's type names on the wire
  // The same request through the proxy to a plaintext head: its bytes are on the wire.
  {
    const auto file = write_cluster(dir, "plain1", 1, base + 5, "");
    node_processes plain{file, dir / "plain"};
    recording_proxy proxy{static_cast<std::uint16_t>(base + 5)};
    {
      net::client_system client;
      auto coord = net::connect(client.sys, proxy.address());
      REQUIRE(coord);
      const auto bytes = checked_request(client.sys, *coord, 11);
      CHECK(proxy.saw(bytes));
      CHECK(proxy.saw(type_name));
    }
    CHECK(plain.stop() == 0);
  }
  const auto file = write_cluster(dir, "tls3", 3, base, tls_table(pki.node()));
  node_processes cluster{file, dir / "tls3"};
  const auto head = cluster.config.nodes[0].address();
  // A client of the CA, straight and through the proxy; after every step the cluster serves
  // (a checked request) with its three nodes.
  auto serving = [&](const std::string& after, const std::string& address, std::uint64_t seed,
                     int requests) {
    INFO("after " << after);
    net::client_system client{pki.client()};
    auto coord = net::connect(client.sys, address);
    REQUIRE(coord);
    std::string bytes;
    for (int i = 0; i < requests; ++i)
      bytes = checked_request(client.sys, *coord, seed + static_cast<std::uint64_t>(i),
                              1 + i % 9);
    auto s = net::status(client.sys, *coord);
    REQUIRE(s);
    CHECK(s->nodes == std::vector<std::string>{"n1", "n2", "n3"});
    CHECK(s->alive == std::vector<bool>{true, true, true});
    return bytes;
  };
  serving("the start", head, 300, 12);
  {
    recording_proxy proxy{static_cast<std::uint16_t>(base)};
    const auto bytes = serving("the start", proxy.address(), 11, 1);
    CHECK(proxy.recorded().size() > bytes.size());
    CHECK_FALSE(proxy.saw(bytes));
    CHECK_FALSE(proxy.saw(bytes.substr(0, 16)));
    CHECK_FALSE(proxy.saw(type_name));
  }
  // Refused, each with its reason.
  const auto d = dir.string() + "/";
  // CAF's own reason depends on when the peer's alert arrives (seen under load: the second).
  const auto refused = [&](const std::string& caf_reason) {
    return "link_failed: TLS link to " + head + " failed (system_error(" + caf_reason
           + ")): the certificate of " + head + " does not verify against the ca \"" + d
           + "other_ca.pem\": self-signed certificate in certificate chain";
  };
  CHECK_THAT(connect_error(pki.intruder(), head),
             Catch::Equals(refused("disconnect_during_handshake"))
               || Catch::Equals(refused("cannot_connect_to_node")));
  serving("a client of the other CA", head, 400, 1);
  CHECK_THAT(connect_error(pki.intruder_trusting_us(), head),
             Catch::StartsWith("link_failed: TLS link to " + head + " failed (")
               && Catch::Contains(": " + head + " refused this process's certificate \"" + d
                                  + "intruder.pem\": "));
  serving("a client of the other CA that trusts ours", head, 410, 1);
  CHECK(connect_error({}, head)
        == "link_failed: link to " + head
             + " failed (system_error(disconnect_during_handshake)): a cluster with [tls] "
               "refuses links without TLS");
  serving("a client without TLS", head, 420, 1);
  // A node of the other CA cannot join; the CLI says why.
  auto [rc, out] = run_eoe("node --join " + head + " --name n9 --listen 127.0.0.1:0 --tls-ca "
                           + pki.path("other_ca.pem") + " --tls-cert " + pki.path("intruder.pem")
                           + " --tls-key " + pki.path("intruder.key"));
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("eoe node n9: link_failed: TLS link to " + head + " failed (")
                    && Catch::Contains("does not verify against the ca \"" + d + "other_ca.pem\""));
  serving("a node of the other CA", head, 430, 1);

  // A node of the cluster's CA joins over TLS (its key's passphrase from the environment).
  const auto join_log = dir / "n4.log";
  const pid_t n4 = fork();
  REQUIRE(n4 >= 0);
  if (n4 == 0) {
    setsid();
    if (!std::freopen(join_log.c_str(), "w", stdout))
      std::_Exit(126);
    dup2(fileno(stdout), fileno(stderr));
    setenv("EOE_TLS_PASSPHRASE", pki.passphrase.c_str(), 1);
    const auto tls = pki.node();
    execl(eoe_binary().c_str(), "eoe", "node", "--join", head.c_str(), "--name", "n4",
          "--listen", "127.0.0.1:0", "--tls-ca", tls.ca.c_str(), "--tls-cert",
          tls.certificate.c_str(), "--tls-key", tls.key.c_str(), nullptr);
    std::_Exit(127);
  }
  cluster.nodes.push_back({"n4", n4, join_log}); // stop_nodes reaps it whatever happens
  {
    net::client_system client{pki.client()};
    auto coord = net::connect(client.sys, head);
    REQUIRE(coord);
    bool joined = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!joined && std::chrono::steady_clock::now() < until) {
      auto s = net::status(client.sys, *coord);
      joined = s && s->nodes.size() == 4 && s->alive == std::vector<bool>{true, true, true, true};
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    INFO(net::log_tail(join_log));
    CHECK(joined);
    checked_request(client.sys, *coord, 501);
  }
  CHECK(cluster.stop() == 0);
  const auto log = net::log_tail(join_log, 50);
  CHECK_THAT(log, Catch::Contains("node n4 listening on 127.0.0.1:")
                    && Catch::Contains(" (TLS)\n    node n4 joined the cluster at " + head));
}

TEST_CASE("bytes that are not TLS, or a client that leaves without closing TLS, cost the head "
          "none of its other links",
          "[tls][processes]") {
  // CAF 0.17.6's openssl module neither drains OpenSSL's per-thread error queue after a failed
  // call (it does so only in log statements, compiled out) nor empties it before the next. A
  // failed handshake or an unexpected EOF left an error there; the next SSL_read of any link of
  // that thread that found half a record read it as a failure and closed the link: under load,
  // both of a head's node links at once. eoe empties the queue before every TLS call
  // (net/openssl_error_queue.cpp). Here the client's link trickles in through a proxy, so its
  // every record arrives in parts, right after each fault.
  const test_pki pki{"queue"}; // its folder removed however the case ends
  const auto& dir = pki.dir;
  const auto file = write_cluster(dir, "tlsq", 3, base_port() + 6, tls_table(pki.node()));
  node_processes cluster{file, dir / "tlsq"};
  const auto head = cluster.config.nodes[0].address();
  recording_proxy trickle{static_cast<std::uint16_t>(port_of(head)), 7};
  net::client_system client{pki.client()};
  auto coord = net::connect(client.sys, trickle.address());
  REQUIRE(coord);
  checked_request(client.sys, *coord, 500);
  auto serves_on = [&](const std::string& after, std::uint64_t seed) {
    INFO("after " << after);
    for (std::uint64_t i = 0; i < 3; ++i)
      checked_request(client.sys, *coord, seed + i, 1 + static_cast<Eigen::Index>(i) * 4);
    auto s = net::status(client.sys, *coord);
    REQUIRE(s);
    CHECK(s->alive == std::vector<bool>{true, true, true});
  };
  // Not TLS: the head's handshake fails on "wrong version number".
  for (int i = 0; i < 3; ++i) {
    asio::io_context io;
    tcp::socket s{io};
    s.connect({asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port_of(head))});
    asio::write(s, asio::buffer(std::string{"GET / HTTP/1.1\r\nHost: eoe\r\n\r\n"}));
    boost::system::error_code ec;
    std::array<char, 256> sink;
    while (!ec) // until the head closes it
      s.read_some(asio::buffer(sink), ec);
    serves_on("bytes that are not TLS", 510 + 10 * static_cast<std::uint64_t>(i));
  }
  // A client process of the CA that asks and goes: CAF sends no close_notify, so the head
  // reads an unexpected EOF.
  const auto tls = pki.client();
  for (int i = 0; i < 3; ++i) {
    auto [rc, out] = run_eoe("status --connect " + head + " --tls-ca " + tls.ca + " --tls-cert "
                             + tls.certificate + " --tls-key " + tls.key);
    CHECK(rc == 0);
    CHECK_THAT(out, Catch::Contains("n3"));
    serves_on("a client that left", 550 + 10 * static_cast<std::uint64_t>(i));
  }
  CHECK(cluster.stop() == 0);
}
