// bench/gateway_load: load through the HTTP gateway of a 3-node cluster (3 `eoe node`
// processes on loopback, the embedded default model), every answer checked against the
// in-process reference; and the same load through the CAF client (net/load_generator) as the
// baseline, in the same run.
//
//   build/bin/bench_gateway_load [--requests 10000] [--concurrency 64] [--tokens 4]
//                                [--io-threads 2] [--max-batch-rows 4096]
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

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
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

struct outcome {
  std::atomic<size_t> ok{0}, wrong{0}, failed{0}, lost{0};
  std::mutex mu;
  std::vector<double> latency_ms;
  std::map<std::string, size_t> errors;
};

} // namespace

int main(int argc, char** argv) {
  size_t requests = 10000, concurrency = 64, tokens = 4, io_threads = 2, max_batch_rows = 4096;
  CLI::App app{"Load through the HTTP gateway against the CAF client, every answer checked"};
  app.add_option("--requests", requests);
  app.add_option("--concurrency", concurrency);
  app.add_option("--tokens", tokens);
  app.add_option("--io-threads", io_threads, "[gateway] io_threads")->check(CLI::Range(1, 64));
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
      + std::to_string(max_batch_rows) + "\n[gateway]\nlisten = \"127.0.0.1:" + std::to_string(base + 9) + "\"\nmax_concurrency = " + std::to_string(concurrency)
      + "\nio_threads = " + std::to_string(io_threads) + "\n");

  // Through the gateway: `concurrency` clients, each on a keep-alive connection.
  outcome o;
  std::atomic<size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (size_t c = 0; c < concurrency; ++c)
    clients.emplace_back([&] {
      auto be = kernels::make_cpu_backend();
      asio::io_context io;
      std::optional<tcp::socket> sock;
      beast::flat_buffer buf;
      for (size_t i; (i = next++) < requests;) {
        const auto x = input_of(i, tokens, width);
        const std::string bytes(reinterpret_cast<const char*>(x.data()), static_cast<size_t>(x.size()) * 4);
        const std::string body = "{\"tokens_b64\":\"" + net::encode_base64(bytes)
                                 + "\",\"rows\":" + std::to_string(tokens) + "}";
        http::request<http::string_body> req{http::verb::post, "/v1/infer", 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        const auto t0 = std::chrono::steady_clock::now();
        http::response<http::string_body> res;
        beast::error_code ec;
        for (int attempt = 0; attempt < 2; ++attempt) { // a closed keep-alive: reconnect once
          if (!sock) {
            sock.emplace(io);
            sock->connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(base + 9)}, ec);
            if (ec) {
              sock.reset();
              continue;
            }
          }
          http::write(*sock, req, ec);
          if (!ec)
            http::read(*sock, buf, res, ec);
          if (!ec)
            break;
          sock.reset();
          buf.clear();
        }
        if (ec) {
          ++o.lost;
          continue;
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (res.result_int() != 200) {
          ++o.failed;
          std::lock_guard lock{o.mu};
          ++o.errors[std::to_string(res.result_int()) + " " + res.body().substr(0, 120)];
          continue;
        }
        auto want = experts::forward(*be, *model, x);
        double diff = 1e30;
        try {
          const auto j = nlohmann::json::parse(res.body());
          const auto& out = j.at("output");
          diff = 0;
          for (size_t r = 0; r < out.size(); ++r)
            for (size_t k = 0; k < out[r].size(); ++k)
              diff = std::max(diff, std::abs(out[r][k].get<double>()
                                             - want->output(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(k))));
          if (out.size() != tokens)
            diff = 1e30;
        } catch (const std::exception&) {
        }
        (diff <= 1e-5 ? o.ok : o.wrong)++;
        std::lock_guard lock{o.mu};
        o.latency_ms.push_back(ms);
      }
    });
  for (auto& t : clients)
    t.join();
  const double gw_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The baseline: the same load through the CAF client.
  net::load_report direct;
  {
    actors::mesh_config cfg;
    caf::actor_system sys{cfg};
    const auto coord = cluster->head(sys);
    net::load_options lo;
    lo.requests = requests;
    lo.concurrency = concurrency;
    lo.tokens = tokens;
    lo.deadline_ms = 20000;
    direct = net::run_load(sys, coord, lo);
  }
  cluster.reset(); // the nodes stop
  fs::remove_all(dir);

  const double gw_rps = static_cast<double>(o.ok + o.wrong) / gw_secs;
  const double direct_rps = static_cast<double>(direct.ok + direct.wrong) / direct.seconds;
  std::printf("machine: %s\n", bench::machine_line().c_str());
  std::printf("3 node processes on loopback, embedded default model, %zu requests of %zu tokens at "
              "concurrency %zu, every answer checked against the reference\n",
              requests, tokens, concurrency);
  std::printf("%-26s %7s %6s %7s %5s %10s %10s %10s\n", "", "ok", "wrong", "failed", "lost",
              "p50 ms", "p99 ms", "req/s");
  std::printf("%-26s %7zu %6zu %7zu %5zu %10.2f %10.2f %10.0f\n", "HTTP gateway (JSON)",
              o.ok.load(), o.wrong.load(), o.failed.load(), o.lost.load(),
              net::quantile(o.latency_ms, 0.5), net::quantile(o.latency_ms, 0.99), gw_rps);
  std::printf("%-26s %7zu %6zu %7zu %5zu %10.2f %10.2f %10.0f\n", "CAF client (baseline)",
              direct.ok, direct.wrong, direct.failed, direct.lost,
              net::quantile(direct.latency_ms, 0.5), net::quantile(direct.latency_ms, 0.99),
              direct_rps);
  std::printf("gateway / CAF client requests per second: %.3f\n", gw_rps / direct_rps);
  for (auto& [e, n] : o.errors)
    std::printf("  %zu x %s\n", n, e.c_str());
  return o.wrong + o.lost == 0 ? 0 : 1;
}
