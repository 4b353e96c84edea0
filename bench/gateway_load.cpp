// bench/gateway_load: load through the HTTP gateway of a 3-node cluster (3 `eoe node`
// processes on loopback, the embedded default model), every answer checked against the
// in-process reference; and the same load through the CAF client (net/load_generator) as the
// baseline, in the same run.
//
//   build/bin/bench_gateway_load [--requests 10000] [--concurrency 64] [--tokens 4]
//                                [--io-threads 2] [--max-batch-rows 4096] [--worker-threads 0]
//
// Prints ok / wrong / failed / lost, latency p50 / p99 and requests/s for both, and the ratio.

#include "actors/mesh_config.hpp"
#include "actors/node_agent.hpp"
#include "bench/loopback_cluster.hpp"
#include "bench/machine.hpp"
#include "experts/model/forward.hpp"
#include "experts/base/rng.hpp"
#include "net/client.hpp"
#include "net/infer_json.hpp"
#include "net/load_generator.hpp"
#include "net/process_cluster.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unistd.h>

using namespace eoe;
namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

matrix input_of(size_t i, size_t tokens, int width) {
  experts::rng r{1000 + i};
  matrix x(static_cast<Eigen::Index>(tokens), width);
  for (Eigen::Index k = 0; k < x.size(); ++k)
    x.data()[k] = static_cast<float>(r.normal());
  return x;
}

struct outcome { // of the HTTP side, counted on its one I/O thread
  size_t ok = 0, wrong = 0, failed = 0, lost = 0;
  std::vector<double> latency_ms;
  std::map<std::string, size_t> errors;
};

} // namespace

int main(int argc, char** argv) {
  size_t requests = 10000, concurrency = 64, tokens = 4, io_threads = 2, max_batch_rows = 4096,
         worker_threads = 0;
  CLI::App app{"Load through the HTTP gateway against the CAF client, every answer checked"};
  app.add_option("--requests", requests);
  app.add_option("--concurrency", concurrency);
  app.add_option("--tokens", tokens);
  app.add_option("--io-threads", io_threads, "[gateway] io_threads")->check(CLI::Range(1, 64));
  app.add_option("--worker-threads", worker_threads,
                 "[cluster] worker_threads (0: the machine's hardware threads)")
    ->check(CLI::Range(0, 256));
  app.add_option("--max-batch-rows", max_batch_rows,
                 "[cluster] max_batch_rows (0: every request alone, no coalescing)")
    ->check(CLI::Range(0, 1 << 20));
  CLI11_PARSE(app, argc, argv);

  const auto model = actors::load_model("");
  const int width = model->config.input_dim;
  const auto dir = fs::temp_directory_path() / ("eoe_bench_gateway_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const int base = 31000 + static_cast<int>(getpid() % 1000) * 10;
  auto cluster = std::make_unique<bench::loopback_cluster>(
    dir, base,
    "[cluster]\nname = \"gw3\"\ndeadline_ms = 20000\nmiddleman_workers = 1\nmax_batch_rows = "
      + std::to_string(max_batch_rows) + "\nworker_threads = " + std::to_string(worker_threads) + "\n[gateway]\nlisten = \"127.0.0.1:" + std::to_string(base + 9) + "\"\nmax_concurrency = " + std::to_string(concurrency)
      + "\nio_threads = " + std::to_string(io_threads) + "\n");

  // The requests' bodies and reference answers, made before the clock starts (as the CAF
  // client's inputs and references are not the cluster's work, neither are these): a pool of
  // distinct inputs the requests go through in turn.
  struct prepared {
    std::string body;
    matrix want;
  };
  std::vector<prepared> pool(std::min<size_t>(requests, 512));
  {
    auto be = kernels::make_cpu_backend();
    for (size_t i = 0; i < pool.size(); ++i) {
      const auto x = input_of(i, tokens, width);
      const std::string bytes(reinterpret_cast<const char*>(x.data()),
                              static_cast<size_t>(x.size()) * 4);
      pool[i].body = "{\"tokens_b64\":\"" + net::encode_base64(bytes)
                     + "\",\"rows\":" + std::to_string(tokens) + "}";
      pool[i].want = experts::forward(*be, *model, x)->output;
    }
  }

  // Through the gateway: `concurrency` keep-alive connections, each sending its next request
  // when the last is answered, all driven by one thread (as a load generator such as wrk
  // does; a thread per connection would spend these 2 cores switching between clients).
  outcome o;
  size_t next = 0; // on the io thread only
  asio::io_context io;
  const tcp::endpoint gateway{asio::ip::make_address("127.0.0.1"),
                              static_cast<unsigned short>(base + 9)};
  struct connection {
    // (a flat_buffer left alone reads 512 bytes a call, as a client with a real buffer does not)
    explicit connection(asio::io_context& io) : sock(io) {
      buf.reserve(64 * 1024);
    }
    tcp::socket sock;
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::response<http::string_body> res;
    size_t i = 0;
    int attempt = 0;
    std::chrono::steady_clock::time_point t0;
  };
  std::function<void(std::shared_ptr<connection>)> send, exchange;
  const auto answered = [&](const std::shared_ptr<connection>& c) {
    const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c->t0).count();
    if (c->res.result_int() != 200) {
      ++o.failed;
      ++o.errors[std::to_string(c->res.result_int()) + " " + c->res.body().substr(0, 120)];
      return;
    }
    const auto& want = pool[c->i % pool.size()].want;
    double diff = 1e30;
    try {
      const auto j = nlohmann::json::parse(c->res.body());
      const auto& out = j.at("output");
      diff = 0;
      for (size_t r = 0; r < out.size(); ++r)
        for (size_t k = 0; k < out[r].size(); ++k)
          diff = std::max(diff, std::abs(out[r][k].get<double>()
                                         - want(static_cast<Eigen::Index>(r),
                                                static_cast<Eigen::Index>(k))));
      if (out.size() != tokens)
        diff = 1e30;
    } catch (const std::exception&) {
    }
    (diff <= 1e-5 ? o.ok : o.wrong)++;
    o.latency_ms.push_back(ms);
  };
  // A closed keep-alive connection: reconnect and send again, once; then the request is lost.
  const auto retry = [&](const std::shared_ptr<connection>& c) {
    beast::error_code ignored;
    c->sock.close(ignored);
    c->buf.clear();
    if (c->attempt++ > 0) {
      ++o.lost;
      send(c);
      return;
    }
    c->sock.async_connect(gateway, [&, c](beast::error_code ec) {
      if (ec) {
        ++o.lost;
        c->attempt = 0;
        send(c);
        return;
      }
      exchange(c);
    });
  };
  exchange = [&](std::shared_ptr<connection> c) {
    c->res = {};
    http::async_write(c->sock, c->req, [&, c](beast::error_code ec, size_t) {
      if (ec)
        return retry(c);
      http::async_read(c->sock, c->buf, c->res, [&, c](beast::error_code ec, size_t) {
        if (ec)
          return retry(c);
        answered(c);
        send(c);
      });
    });
  };
  send = [&](std::shared_ptr<connection> c) {
    if (next >= requests)
      return;
    c->i = next++;
    c->attempt = 0;
    c->req = {http::verb::post, "/v1/infer", 11};
    c->req.set(http::field::host, "127.0.0.1");
    c->req.set(http::field::content_type, "application/json");
    c->req.body() = pool[c->i % pool.size()].body;
    c->req.prepare_payload();
    c->t0 = std::chrono::steady_clock::now();
    if (c->sock.is_open())
      exchange(c);
    else
      retry(c); // not connected yet: connect (its first try)
  };
  actors::mesh_config cfg;
  caf::actor_system sys{cfg};
  const auto coord = cluster->head(sys);
  const auto batches_before = bench::loopback_cluster::batches_of(sys, coord);
  const auto start = std::chrono::steady_clock::now();
  for (size_t c = 0; c < concurrency; ++c) {
    send(std::make_shared<connection>(io));
  }
  io.run();
  const double gw_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const auto gw_batches = bench::loopback_cluster::batches_of(sys, coord) - batches_before;

  // The baseline: the same load through the CAF client.
  net::load_report direct;
  std::uint64_t direct_batches = 0;
  {
    const auto before = bench::loopback_cluster::batches_of(sys, coord);
    net::load_options lo;
    lo.requests = requests;
    lo.concurrency = concurrency;
    lo.tokens = tokens;
    lo.deadline_ms = 20000;
    direct = net::run_load(sys, coord, lo);
    direct_batches = bench::loopback_cluster::batches_of(sys, coord) - before;
  }
  cluster.reset(); // the nodes stop
  fs::remove_all(dir);

  const double gw_rps = static_cast<double>(o.ok + o.wrong) / gw_secs;
  const double direct_rps = static_cast<double>(direct.ok + direct.wrong) / direct.seconds;
  std::printf("machine: %s\n", bench::machine_line().c_str());
  std::printf("3 node processes on loopback, embedded default model, %zu requests of %zu tokens at "
              "concurrency %zu, every answer checked against the reference\n",
              requests, tokens, concurrency);
  std::printf("%-26s %7s %6s %7s %5s %10s %10s %10s %9s\n", "", "ok", "wrong", "failed", "lost",
              "p50 ms", "p99 ms", "req/s", "per batch");
  const auto per_batch = [](size_t n, std::uint64_t batches) {
    return batches > 0 ? static_cast<double>(n) / static_cast<double>(batches) : 0.0;
  };
  std::printf("%-26s %7zu %6zu %7zu %5zu %10.2f %10.2f %10.0f %9.2f\n", "HTTP gateway (JSON)",
              o.ok, o.wrong, o.failed, o.lost,
              net::quantile(o.latency_ms, 0.5), net::quantile(o.latency_ms, 0.99), gw_rps,
              per_batch(requests, gw_batches));
  std::printf("%-26s %7zu %6zu %7zu %5zu %10.2f %10.2f %10.0f %9.2f\n", "CAF client (baseline)",
              direct.ok, direct.wrong, direct.failed, direct.lost,
              net::quantile(direct.latency_ms, 0.5), net::quantile(direct.latency_ms, 0.99),
              direct_rps, per_batch(requests, direct_batches));
  std::printf("gateway / CAF client requests per second: %.3f\n", gw_rps / direct_rps);
  for (auto& [e, n] : o.errors)
    std::printf("  %zu x %s\n", n, e.c_str());
  return o.wrong + o.lost == 0 ? 0 : 1;
}
