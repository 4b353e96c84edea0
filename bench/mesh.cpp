// bench/mesh: the actor mesh against the in-process reference forward, measured in the same
// run, plus the network path it stands on.
//
//   build/bin/bench_mesh [--tokens 256] [--dim 1024] [--hidden 4096] [--experts 8] [--k 2]
//                        [--rank 256] [--layers 2] [--reps 10]
//
// 1. forward latency at batch `tokens`: mesh on 1 process / reference (goal <= 1.15), and on
//    3 processes on loopback / reference (goal <= 1.6);
// 2. per-hop latency between two node processes: half a ping's round trip, p50 and p99;
// 3. tensor bytes per second between two nodes (1 MiB contributions over the data plane,
//    pipelined, handed to an actor on arrival) / a plain TCP socket pair on the same machine
//    moving the same bytes (goal >= 0.8); the same through CAF's middleman for comparison.
//    5 alternating rounds, medians.

#include "actors/local_cluster.hpp"
#include "actors/mesh_config.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "bench/layer_shape.hpp"
#include "bench/loopback_cluster.hpp"
#include "bench/machine.hpp"
#include "bench/timing.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"
#include "net/client.hpp"
#include "net/process_cluster.hpp"
#include "net/tcp_data_plane.hpp"
#include "actors/contribution_codec.hpp"
#include "actors/data_plane.hpp"

#include <caf/actor_cast.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>
#include <caf/scoped_actor.hpp>

#include <CLI/CLI.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <iterator>
#include <sstream>
#include <arpa/inet.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace eoe;
using namespace eoe::actors;
namespace fs = std::filesystem;
using eoe::bench::clock_type;
using eoe::bench::quantile;
using eoe::bench::seconds_since;

namespace {

/// Median seconds of `reps` mesh requests (after one warm-up), checked against the reference;
/// `trace`: every request traced.
double mesh_seconds(caf::actor_system& sys, const coordinator_actor& coord, const matrix& x,
                    int reps, const matrix& want, bool trace = false) {
  caf::scoped_actor self{sys};
  std::vector<double> t;
  for (int i = 0; i <= reps; ++i) {
    infer_request req;
    req.tokens = to_wire(x);
    req.deadline_ms = 120000;
    req.want_record = false;
    req.trace = trace;
    const auto start = clock_type::now();
    self->request(coord, std::chrono::minutes(3), infer_atom::value, std::move(req))
      .receive(
        [&](const infer_result& r) {
          const double s = seconds_since(start);
          if (i > 0)
            t.push_back(s);
          const matrix out = from_wire(r.output, "output");
          const double diff = (out - want).cwiseAbs().maxCoeff();
          if (diff > 1e-4)
            std::fprintf(stderr, "warning: mesh output differs from the reference by %g\n", diff);
        },
        [&](const caf::error& err) {
          std::fprintf(stderr, "bench_mesh: %s\n", describe(err).c_str());
          std::exit(1);
        });
  }
  return quantile(t, 0.5);
}

// ---- the network path ----------------------------------------------------------------------

/// Seconds that `count` items take through send_batch(n), in batches of `window`, after one
/// batch to warm up (connection, buffers).
template <class F>
double batched_seconds(int count, int window, F&& send_batch) {
  send_batch(window);
  const auto start = clock_type::now();
  for (int sent = 0; sent < count; sent += window)
    send_batch(std::min(window, count - sent));
  return seconds_since(start);
}

/// Receives tensors one way (as the mesh sends contributions) and answers a barrier with the
/// bytes received so far.
using sink_actor = caf::typed_actor<caf::reacts_to<contrib_atom, wire_tensor>,
                                    caf::replies_to<stats_atom>::with<std::uint64_t>>;

struct sink_state {
  std::uint64_t bytes = 0;
};

sink_actor::behavior_type sink(sink_actor::stateful_pointer<sink_state> self, int) {
  return {[=](contrib_atom, const wire_tensor& t) { self->state.bytes += t.bytes.size(); },
          [=](stats_atom) { return self->state.bytes; }};
}

/// Bytes per second of `count` 1 MiB tensors sent one way from one CAF node to another over
/// loopback, acknowledged every `window` tensors.
double caf_bytes_per_second(int count, int window, size_t workers) {
  mesh_config cfg_a, cfg_b;
  cfg_a.middleman_workers(workers);
  cfg_b.middleman_workers(workers);
  caf::actor_system a{cfg_a}, b{cfg_b};
  auto s = b.spawn(sink, 0); // (an argument: see the data plane's sink)
  auto port = b.middleman().publish(s, 0, "127.0.0.1");
  auto remote = a.middleman().remote_actor<sink_actor>("127.0.0.1", *port);
  if (!remote) {
    std::fprintf(stderr, "bench_mesh: %s\n", a.render(remote.error()).c_str());
    std::exit(1);
  }
  wire_tensor t;
  t.rows = 256;
  t.cols = 1024;
  t.bytes.assign(256 * 1024 * 4, '\x01');
  caf::scoped_actor self{a};
  // Like the TCP pair: `n` tensors one way, then one acknowledgement for the batch.
  const auto msg = caf::make_message(contrib_atom::value, t);
  auto send_batch = [&](int n) {
    for (int i = 0; i < n; ++i)
      caf::anon_send(caf::actor_cast<caf::actor>(*remote), msg);
    self->request(*remote, std::chrono::seconds(60), stats_atom::value)
      .receive([](std::uint64_t) {}, [&](caf::error& e) {
        std::fprintf(stderr, "bench_mesh: %s\n", a.render(e).c_str());
        std::exit(1);
      });
  };
  const double secs = batched_seconds(count, window, send_batch);
  anon_send_exit(s, caf::exit_reason::user_shutdown);
  return static_cast<double>(count) * static_cast<double>(t.bytes.size()) / secs;
}

/// Frames delivered to the data plane's sink, and a wake-up for whoever waits for a batch:
/// like the TCP pair's one-byte acknowledgement, one wake-up per batch, not a poll.
struct delivery_count {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t frames = 0; ///< guarded by mu
  std::uint64_t wanted = 0; ///< guarded by mu: wake the waiter when frames reach it
};

/// Receives contributions from the data plane (as a relay does) and counts them.
using contrib_sink_actor = caf::typed_actor<caf::reacts_to<contrib_atom, contribution>>;

contrib_sink_actor::behavior_type contrib_sink(contrib_sink_actor::pointer,
                                               delivery_count* count) {
  return {[=](contrib_atom, const contribution&) {
    std::lock_guard lock{count->mu};
    if (++count->frames == count->wanted)
      count->cv.notify_one();
  }};
}

/// Bytes per second of `count` contributions carrying a 1 MiB tensor each, from one node's
/// data plane to another's on loopback (written from their messages, read into new ones and
/// handed to the receiving actor), `window` in flight before waiting for their delivery.
double data_plane_bytes_per_second(int count, int window) {
  mesh_config cfg;
  caf::actor_system sys{cfg};
  delivery_count delivered;
  auto s = sys.spawn(contrib_sink, &delivered);
  data_planes::register_receiver("sink", caf::actor_cast<caf::actor>(s));
  std::ostringstream log;
  net::tcp_data_plane a{"127.0.0.1", 0, log}, b{"127.0.0.1", 0, log};
  contribution c;
  c.request = 1;
  c.sender_node = "bench";
  c.y.rows = 256;
  c.y.cols = 1024;
  c.y.bytes.assign(256 * 1024 * 4, '\x01');
  // One message sent again and again, as the CAF test sends one message and the TCP pair one
  // buffer: what is measured is the path, not making tensors.
  const auto frame = frame_of(caf::make_message(contrib_atom::value, std::move(c)));
  std::uint64_t sent = 0;
  auto send_batch = [&](int n) {
    {
      std::lock_guard lock{delivered.mu};
      delivered.wanted = sent + static_cast<std::uint64_t>(n);
    }
    for (int i = 0; i < n; ++i)
      a.send(b.address(), "sink", frame);
    sent += static_cast<std::uint64_t>(n);
    std::unique_lock lock{delivered.mu};
    while (!delivered.cv.wait_for(lock, std::chrono::seconds(1),
                                  [&] { return delivered.frames >= sent; }))
      if (a.dropped() + b.dropped() > 0) {
        std::fprintf(stderr, "bench_mesh: the data plane dropped frames: %s\n", log.str().c_str());
        std::exit(1);
      }
  };
  const double secs = batched_seconds(count, window, send_batch);
  anon_send_exit(s, caf::exit_reason::user_shutdown);
  return static_cast<double>(count) * static_cast<double>(frame->payloads[2].size()) / secs;
}

/// Bytes per second of the same bytes over a plain TCP socket pair on loopback: the writer
/// sends `window` MiB, the reader acknowledges each batch with one byte.
double tcp_bytes_per_second(int count, int window) {
  const size_t chunk = 256 * 1024 * 4;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  listen(listener, 1);
  std::thread reader([&] {
    int fd = accept(listener, nullptr, nullptr);
    std::vector<char> buf(1 << 20);
    size_t want = chunk * static_cast<size_t>(window), got = 0;
    for (int batch = 0; batch < (count + window - 1) / window + 1; ++batch) {
      got = 0;
      while (got < want) {
        const auto n = read(fd, buf.data(), std::min(buf.size(), want - got));
        if (n <= 0)
          return;
        got += static_cast<size_t>(n);
      }
      char ack = 1;
      if (write(fd, &ack, 1) != 1)
        return;
    }
    close(fd);
  });
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  std::string data(chunk, '\x01');
  auto batch = [&] {
    for (int i = 0; i < window; ++i)
      for (size_t off = 0; off < data.size();) {
        const auto n = write(fd, data.data() + off, data.size() - off);
        if (n <= 0)
          std::exit(1);
        off += static_cast<size_t>(n);
      }
    char ack;
    if (read(fd, &ack, 1) != 1)
      std::exit(1);
  };
  batch(); // warm-up
  const auto start = clock_type::now();
  for (int sent = 0; sent < count; sent += window)
    batch();
  const double secs = seconds_since(start);
  close(fd);
  reader.join();
  close(listener);
  return static_cast<double>((count + window - 1) / window * window) * static_cast<double>(chunk)
         / secs;
}

/// The 3-process mesh with tracing off and with every request traced to files in dir/trace,
/// in alternating rounds; prints both medians, the ratio and what the traces weigh.
int run_trace_overhead(const std::string& ckpt, const fs::path& dir, const matrix& x, int reps,
                       const matrix& want) {
  const auto trace_dir = dir / "trace";
  std::vector<double> off, on;
  {
    const bench::loopback_cluster cluster{
      dir, 30000 + static_cast<int>(getpid() % 1000) * 10,
      "[cluster]\nname = \"bench3\"\ncheckpoint = \"" + ckpt + "\"\n[trace]\ndir = \""
        + trace_dir.string() + "\"\n"};
    mesh_config cfg;
    caf::actor_system sys{cfg};
    const auto coord = cluster.head(sys);
    for (int round = 0; round < 5; ++round) {
      off.push_back(mesh_seconds(sys, coord, x, reps, want, false));
      on.push_back(mesh_seconds(sys, coord, x, reps, want, true));
    }
  } // the nodes stop here, and flush their traces
  std::uintmax_t bytes = 0;
  size_t lines = 0;
  for (auto& f : fs::directory_iterator(trace_dir)) {
    bytes += fs::file_size(f.path());
    std::ifstream in{f.path()};
    lines += static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in),
                                            std::istreambuf_iterator<char>(), '\n'));
  }
  const auto traced = static_cast<double>(5 * (reps + 1));
  const double t_off = quantile(off, 0.5), t_on = quantile(on, 0.5);
  std::printf("machine: %s\n", bench::machine_line().c_str());
  std::printf("3 processes on loopback, %lld tokens, median of 5 rounds of %d requests each\n",
              static_cast<long long>(x.rows()), reps);
  std::printf("%-44s %10.3f ms\n", "tracing off", t_off * 1e3);
  std::printf("%-44s %10.3f ms   ratio %.3f (goal <= 1.05)\n", "every request traced", t_on * 1e3,
              t_on / t_off);
  std::printf("%-44s %10.0f events, %.1f KiB per request\n", "trace written", lines / traced,
              static_cast<double>(bytes) / traced / 1024);
  fs::remove_all(dir);
  return 0;
}

} // namespace

int main(int argc, char** argv) {

  bench::layer_shape shape;
  int layers = 2, reps = 10;
  int window = 8;
  size_t mm_workers = 0;
  bool network_only = false;
  bool trace_overhead = false;
  CLI::App app{"The actor mesh against the reference forward and the network path"};
  shape.add_options(app);
  app.add_option("--layers", layers);
  app.add_option("--reps", reps);
  app.add_option("--window", window, "tensors in flight for the bytes-per-second test");
  app.add_option("--middleman-workers", mm_workers, "CAF middleman workers for that test");
  app.add_flag("--network-only", network_only, "only the bytes-per-second test");
  app.add_flag("--trace-overhead", trace_overhead,
               "only the 3-process mesh, tracing off against every request traced");
  CLI11_PARSE(app, argc, argv);
  // The three paths in alternating rounds, medians: this machine's loopback throughput drifts
  // by tens of percent from one second to the next.
  auto network = [&](double& dp_bps, double& caf_bps, double& tcp_bps) {
    std::vector<double> dp, cf, tcp;
    for (int round = 0; round < 5; ++round) {
      dp.push_back(data_plane_bytes_per_second(200, window));
      cf.push_back(caf_bytes_per_second(200, window, mm_workers));
      tcp.push_back(tcp_bytes_per_second(200, window));
    }
    dp_bps = quantile(dp, 0.5);
    caf_bps = quantile(cf, 0.5);
    tcp_bps = quantile(tcp, 0.5);
  };
  if (network_only) {
    double dp_bps = 0, caf_bps = 0, tcp_bps = 0;
    network(dp_bps, caf_bps, tcp_bps);
    std::printf("machine: %s\n", bench::machine_line().c_str());
    std::printf("window %d, middleman workers %zu: data plane %.1f MB/s, CAF %.1f MB/s, TCP %.1f "
                "MB/s; data plane / TCP %.3f, CAF / TCP %.3f\n",
                window, mm_workers, dp_bps / 1e6, caf_bps / 1e6, tcp_bps / 1e6, dp_bps / tcp_bps,
                caf_bps / tcp_bps);
    return 0;
  }

  auto c = shape.model("bench_mesh", layers);
  for (auto& lc : c.layers)
    lc.score_columns = lc.score_width(); // every expert scores itself on all of u
  const auto model = experts::init_model(c);
  const auto dir = fs::temp_directory_path() / ("eoe_bench_mesh_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto ckpt = (dir / "model.ckpt").string();
  if (auto ok = experts::save_checkpoint(model, ckpt); !ok) {
    std::fprintf(stderr, "bench_mesh: %s\n", ok.error().message.c_str());
    return 1;
  }
  const matrix x = shape.input();

  // Reference, as it runs in-process: Eigen with all hardware threads.
  auto be = kernels::make_cpu_backend();
  matrix want;
  std::vector<double> rt;
  for (int i = 0; i <= reps; ++i) {
    const auto start = clock_type::now();
    want = experts::forward(*be, model, x)->output;
    if (i > 0)
      rt.push_back(seconds_since(start));
  }
  const double t_ref = quantile(rt, 0.5);

  // Mesh in one process: the parallelism is the actors; each GEMM on one thread.
  double t_one = 0;
  {
    const int threads = Eigen::nbThreads();
    Eigen::setNbThreads(1);
    mesh_config cfg;
    caf::actor_system sys{cfg};
    auto coord = spawn_local_cluster(sys, ckpt, 1);
    if (!wait_ready(sys, coord, std::chrono::seconds(60))) {
      std::fprintf(stderr, "bench_mesh: the 1-process cluster did not start\n");
      return 1;
    }
    t_one = mesh_seconds(sys, coord, x, reps, want);
    anon_send(coord, shutdown_atom::value);
    Eigen::setNbThreads(threads);
  }

  if (trace_overhead)
    return run_trace_overhead(ckpt, dir, x, reps, want);

  // Mesh on 3 processes on loopback.
  double t_three = 0;
  std::vector<double> hops;
  {
    const bench::loopback_cluster cluster{dir, 30000 + static_cast<int>(getpid() % 1000) * 10,
                                          "[cluster]\nname = \"bench3\"\ncheckpoint = \"" + ckpt
                                            + "\"\n"};
    mesh_config cfg;
    caf::actor_system sys{cfg};
    const auto coord = cluster.head(sys);
    t_three = mesh_seconds(sys, coord, x, reps, want);
    // Per hop: half the round trip of a ping to node n2's agent.
    auto agent = sys.middleman().remote_actor<node_agent_actor>("127.0.0.1",
                                                                cluster.config.nodes[1].port);
    caf::scoped_actor self{sys};
    for (int i = 0; i < 2000; ++i) {
      const auto start = clock_type::now();
      self->request(*agent, std::chrono::seconds(5), status_atom::value)
        .receive([&](const std::string&) { hops.push_back(seconds_since(start) / 2); },
                 [&](const caf::error&) {});
    }
  }

  double dp_bps = 0, caf_bps = 0, tcp_bps = 0;
  network(dp_bps, caf_bps, tcp_bps);
  fs::remove_all(dir);

  std::printf("machine: %s\n", bench::machine_line().c_str());
  std::printf("model: %d EoE layers, D=%d H=%d, %d experts top-%d, rank %d; batch %d tokens\n",
              layers, shape.dim, shape.hidden, shape.experts, shape.k, shape.rank, shape.tokens);
  std::printf("%-44s %10.2f ms\n", "reference forward (in-process)", t_ref * 1e3);
  std::printf("%-44s %10.2f ms   ratio %.3f (goal <= 1.15)\n", "mesh, 1 process", t_one * 1e3,
              t_one / t_ref);
  std::printf("%-44s %10.2f ms   ratio %.3f (goal <= 1.6)\n", "mesh, 3 processes on loopback",
              t_three * 1e3, t_three / t_ref);
  std::printf("%-44s p50 %.1f us, p99 %.1f us (%zu pings)\n", "per-hop latency between processes",
              quantile(hops, 0.5) * 1e6, quantile(hops, 0.99) * 1e6, hops.size());
  std::printf("%-44s %10.1f MB/s\n", "plain TCP socket pair", tcp_bps / 1e6);
  std::printf("%-44s %10.1f MB/s   ratio %.3f (goal >= 0.8)\n",
              "tensor bytes, node to node (data plane)", dp_bps / 1e6, dp_bps / tcp_bps);
  std::printf("%-44s %10.1f MB/s   ratio %.3f\n", "the same through CAF's middleman",
              caf_bps / 1e6, caf_bps / tcp_bps);
  return 0;
}
