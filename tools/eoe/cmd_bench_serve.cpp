// eoe bench serve: the serving load benchmark against a gateway's /v1/completions (the idea of
// vLLM's benchmark_serving). Prompts are windows of the validation fortunes; each answer is
// checked against the in-process decoder of --checkpoint when given (greedy and seeded alike:
// the gateway samples choice 0 with the request's seed).

#include "experts/model/checkpoint.hpp"
#include "experts/model/lm_decode.hpp"
#include "experts/base/rng.hpp"
#include "experts/data/text_corpus.hpp"
#include "net/load_generator.hpp"
#include "net/serve_load.hpp"
#include "tools/eoe/commands.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <iostream>
#include <thread>

namespace eoe::cli {

namespace {

struct serve_args {
  std::string url;
  std::string checkpoint;
  std::string json_out;
  std::string max_tokens = "128";
  size_t prompt_bytes = 64;
  std::uint64_t kv_shard_positions = 4096;
  net::serve_load_options opt;
};

/// http://HOST:PORT -> host, port.
void parse_url(const std::string& url, net::serve_load_options& o) {
  constexpr std::string_view scheme = "http://";
  std::string rest = url.starts_with(scheme) ? url.substr(scheme.size()) : url;
  if (const auto slash = rest.find('/'); slash != std::string::npos)
    rest.resize(slash);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw command_error{"--url: expected http://HOST:PORT, got \"" + url + "\""};
  o.host = rest.substr(0, colon);
  if (o.host == "localhost")
    o.host = "127.0.0.1";
  const auto port = std::stoul(rest.substr(colon + 1));
  if (port == 0 || port > 65535)
    throw command_error{"--url: port " + rest.substr(colon + 1) + " is not in 1..65535"};
  o.port = static_cast<std::uint16_t>(port);
}

void run(serve_args& a) {
  auto& o = a.opt;
  parse_url(a.url, o);
  if (const auto colon = a.max_tokens.find(':'); colon != std::string::npos) {
    o.max_tokens = std::stoul(a.max_tokens.substr(0, colon));
    o.max_tokens_hi = std::stoul(a.max_tokens.substr(colon + 1));
    if (o.max_tokens < 1 || o.max_tokens_hi < o.max_tokens)
      throw command_error{"--max-tokens: expected N or LO:HI with 1 <= LO <= HI"};
  } else {
    o.max_tokens = std::stoul(a.max_tokens);
    if (o.max_tokens < 1)
      throw command_error{"--max-tokens: at least 1"};
  }
  try {
    o.model = net::served_model(o.host, o.port);
  } catch (const std::exception& e) {
    throw command_error{e.what()};
  }
  auto corpus = experts::load_text_corpus();
  if (!corpus)
    throw command_error{corpus.error().message};
  const auto& text = corpus->validation;
  if (text.size() < a.prompt_bytes + 1)
    throw command_error{"the validation fortunes are shorter than --prompt-bytes"};
  experts::rng draw{o.seed};
  for (size_t i = 0; i < std::min<size_t>(o.requests, 1024); ++i) {
    const auto at = static_cast<size_t>(draw.uniform() * static_cast<double>(text.size() - a.prompt_bytes));
    o.prompts.push_back(text.substr(at, a.prompt_bytes));
  }
  std::printf("eoe bench serve: %zu requests to %s (model '%s'), %s, at most %zu in flight; "
              "prompts of %zu bytes from the validation fortunes, max_tokens %s, temperature %g\n",
              o.requests, a.url.c_str(), o.model.c_str(),
              o.rate > 0 ? ("Poisson arrivals at " + std::to_string(o.rate) + " requests/s").c_str()
                         : "all at once",
              o.concurrency, a.prompt_bytes, a.max_tokens.c_str(), o.temperature);
  std::fflush(stdout);
  const auto report = net::run_serve_load(o);

  // Each answer against the in-process decoder, when the model is at hand.
  std::vector<int> verdict(report.results.size(), -1); // -1 unchecked, 0 wrong, 1 right
  if (!a.checkpoint.empty()) {
    auto m = experts::load_checkpoint(a.checkpoint);
    if (!m)
      throw command_error{m.error().message};
    std::atomic<size_t> next{0};
    auto check = [&] {
      for (size_t i; (i = next++) < report.results.size();) {
        const auto& r = report.results[i];
        if (!r.ok)
          continue;
        experts::sampling s;
        s.tokens = static_cast<int>(r.max_tokens);
        s.temperature = o.temperature;
        s.seed = r.seed;
        const auto want = experts::generate(*m, o.prompts[r.prompt], s,
                                            experts::kv_layout{static_cast<std::int64_t>(a.kv_shard_positions), 64});
        verdict[i] = r.bytes == want ? 1 : 0;
      }
    };
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
      threads.emplace_back(check);
    for (auto& t : threads)
      t.join();
  }

  std::vector<double> ttft, itl, e2e;
  size_t ok = 0, failed = 0, wrong = 0, checked = 0, tokens = 0, prompt_tokens = 0;
  std::map<std::string, size_t> errors;
  for (size_t i = 0; i < report.results.size(); ++i) {
    const auto& r = report.results[i];
    if (!r.ok) {
      ++failed;
      ++errors[r.error];
      continue;
    }
    ++ok;
    ttft.push_back(r.ttft_ms);
    e2e.push_back(r.e2e_ms);
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
    tokens += r.bytes.size();
    prompt_tokens += o.prompts[r.prompt].size();
    if (verdict[i] >= 0) {
      ++checked;
      wrong += verdict[i] == 0;
    }
  }
  const auto q = [](const std::vector<double>& v, double p) { return net::quantile(v, p); };
  std::printf("%zu ok, %zu failed, %zu wrong of %zu checked against the in-process decoder%s\n",
              ok, failed, wrong, checked, a.checkpoint.empty() ? " (no --checkpoint)" : "");
  std::printf("%.2f s: %.1f requests/s, %.1f output tokens/s, %.1f total tokens/s\n",
              report.seconds, static_cast<double>(ok) / report.seconds,
              static_cast<double>(tokens) / report.seconds,
              static_cast<double>(tokens + prompt_tokens) / report.seconds);
  for (const auto& [name, v] : {std::pair<const char*, const std::vector<double>&>{"TTFT", ttft},
                                {"ITL", itl}, {"E2E", e2e}})
    std::printf("%-4s ms: mean %8.2f  p50 %8.2f  p90 %8.2f  p99 %8.2f\n", name,
                v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()),
                q(v, 0.5), q(v, 0.9), q(v, 0.99));
  for (const auto& [text, n] : errors)
    std::printf("  %zu x %s\n", n, text.c_str());
  if (!a.json_out.empty()) {
    nlohmann::json j = {{"url", a.url},
                        {"model", o.model},
                        {"requests", o.requests},
                        {"rate", o.rate},
                        {"concurrency", o.concurrency},
                        {"prompt_bytes", a.prompt_bytes},
                        {"max_tokens", a.max_tokens},
                        {"temperature", o.temperature},
                        {"ok", ok},
                        {"failed", failed},
                        {"wrong", wrong},
                        {"checked", checked},
                        {"seconds", report.seconds},
                        {"requests_per_s", static_cast<double>(ok) / report.seconds},
                        {"output_tokens_per_s", static_cast<double>(tokens) / report.seconds}};
    for (const auto& [name, v] : {std::pair<const char*, const std::vector<double>&>{"ttft", ttft},
                                  {"itl", itl}, {"e2e", e2e}})
      for (const auto& [p, key] : {std::pair<double, const char*>{0.5, "p50"}, {0.9, "p90"}, {0.99, "p99"}})
        j[std::string(name) + "_" + key + "_ms"] = q(v, p);
    std::ofstream out{a.json_out};
    out << j.dump(2) << "\n";
    if (!out)
      throw command_error{"cannot write " + a.json_out};
    std::printf("wrote %s\n", a.json_out.c_str());
  }
  if (failed + wrong > 0)
    throw command_error{"failed or wrong answers", 3};
}

} // namespace

void add_bench_serve(CLI::App& bench) {
  auto a = std::make_shared<serve_args>();
  auto* cmd = bench.add_subcommand(
    "serve", "Streamed completions against a gateway's /v1/completions: TTFT, ITL, throughput");
  cmd->add_option("--url", a->url, "the gateway, http://HOST:PORT")->required();
  cmd->add_option("--requests", a->opt.requests, "requests to send")->check(CLI::Range(1, 10000000))
    ->capture_default_str();
  cmd->add_option("--rate", a->opt.rate, "requests per second, Poisson arrivals (0: all at once)")
    ->check(CLI::Range(0.0, 1e6))->capture_default_str();
  cmd->add_option("--concurrency", a->opt.concurrency, "the most requests in flight")
    ->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--prompt-bytes", a->prompt_bytes, "bytes per prompt")
    ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--max-tokens", a->max_tokens, "bytes generated per request: N, or LO:HI drawn uniformly")
    ->capture_default_str();
  cmd->add_option("--temperature", a->opt.temperature, "sampling temperature (0: greedy)")
    ->check(CLI::Range(0.0, 2.0))->capture_default_str();
  cmd->add_option("--seed", a->opt.seed, "prompts, arrivals, lengths and sampling seeds")
    ->capture_default_str();
  cmd->add_option("--checkpoint", a->checkpoint,
                  "the served model: check every answer against the in-process decoder")
    ->check(CLI::ExistingFile);
  cmd->add_option("--kv-shard-positions", a->kv_shard_positions,
                  "the cluster's [cluster] kv_shard_positions (the in-process decoder's shards)")
    ->check(CLI::Range(1, 1 << 30))->capture_default_str();
  cmd->add_option("--json", a->json_out, "write the result as JSON to this file");
  cmd->callback([a] { run(*a); });
}

} // namespace eoe::cli
