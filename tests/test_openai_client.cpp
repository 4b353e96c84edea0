// The official `openai` npm client (tests/openai, installed by tools/setup) against the
// gateway of a language model served by 3 node processes: completions, streamed and not, equal
// the in-process greedy and seeded decodes; an unknown model and a bad max_tokens arrive as
// the client's typed errors; a stream the client aborts leaves no session open. Skipped (exit
// 77) when node or the package is missing, with the reason.

#define CATCH_CONFIG_RUNNER // main below: a skip before Catch2 starts
#include "experts/model/checkpoint.hpp"
#include "experts/model/lm_decode.hpp"
#include "experts/base/model_config.hpp"
#include "net/completion_text.hpp"
#include "node_processes.hpp"
#include "random_model.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <fstream>

using namespace eoe;
namespace fs = std::filesystem;

namespace {

fs::path client_dir() {
  const char* src = std::getenv("EOE_SOURCE_DIR");
  return fs::path{src ? src : "."} / "tests" / "openai";
}


} // namespace

TEST_CASE("the openai npm client: completions streamed and not equal the in-process decode",
          "[completions][processes]") {
  const auto dir = fs::temp_directory_path() / ("eoe_test_openai_" + std::to_string(getpid()));
  const test::scratch_dir scratch{dir}; // however the case ends
  fs::create_directories(dir);
  auto c = experts::parse_model_config(R"(
model = { name = "eoe-test-lm", kind = "lm", vocab = 256, context = 64, dim = 32, seed = 5 }
layer = [
  { kind = "attention", heads = 2 },
  { kind = "eoe", experts = 4, hidden = 32, score_columns = 4, mode = "topk", k = 2 },
  { kind = "attention", heads = 4 },
  { kind = "eoe", experts = 3, hidden = 16, rank = 4, mode = "topk", k = 1 },
]
)", "openai_test");
  REQUIRE(c.has_value());
  const auto m = test::random_model(*c, 23);
  const auto ckpt = (dir / "lm.ckpt").string();
  REQUIRE(experts::save_checkpoint(m, ckpt).has_value());
  const int base = test::base_port();
  const int gateway = base + 7;
  {
    std::ofstream out{dir / "cluster.toml"};
    out << "[cluster]\nname = \"openai\"\ncheckpoint = \"" << ckpt
        << "\"\nhead = \"n1\"\nkv_shard_positions = 16\ndeadline_ms = 30000\n[gateway]\n"
           "listen = \"127.0.0.1:" << gateway << "\"\n";
    for (int i = 0; i < 3; ++i)
      out << "\n[[node]]\nname = \"n" << i + 1 << "\"\nhost = \"127.0.0.1\"\nport = " << base + i
          << "\n";
  }
  test::node_processes cluster{(dir / "cluster.toml").string(), dir};
  // The texts the client must read: greedy and seeded decodes in this process, window
  // restarts included (a context of 64), as valid UTF-8 the way the gateway sends it.
  nlohmann::json cases = nlohmann::json::array();
  const std::vector<std::tuple<std::string, int, double, std::uint64_t>> asks{
    {"The ", 40, 0.0, 1}, {"x", 100, 0.0, 1}, {std::string(300, 'y') + " then", 30, 0.0, 1},
    {"Sampled ", 50, 0.8, 7}};
  for (const auto& [prompt, tokens, temperature, seed] : asks) {
    experts::sampling s;
    s.tokens = tokens;
    s.temperature = temperature;
    s.seed = seed;
    const auto bytes = experts::generate(m, prompt, s, experts::kv_layout{16, 64});
    cases.push_back({{"prompt", prompt}, {"max_tokens", tokens}, {"temperature", temperature},
                     {"seed", seed}, {"text", net::utf8_replacing(bytes)}});
  }
  {
    std::ofstream out{dir / "cases.json"};
    out << cases.dump();
  }
  const auto cmd = "cd " + client_dir().string() + " && timeout 120 node completions.mjs http://127.0.0.1:"
                   + std::to_string(gateway) + " eoe-test-lm " + (dir / "cases.json").string()
                   + " 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  const int status = pclose(p);
  INFO(out);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK_THAT(out, Catch::Contains("openai client: every check passed"));
  CHECK_THAT(out, Catch::Contains("0 sessions open"));
  CHECK(cluster.stop() == 0);
}

int main(int argc, char** argv) {
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    std::printf("test_openai_client: skipped: node is not installed\n");
    return 77;
  }
  if (!fs::exists(client_dir() / "node_modules" / "openai" / "package.json")) {
    std::printf("test_openai_client: skipped: the openai package is not installed in %s (tools/setup "
                "installs it with npm when the registry is reachable)\n",
                client_dir().string().c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
