// The byte-level language model: stable parameter names, gradients of the whole model against
// central finite differences in float64 (relative error <= 1e-4), the training forward equal
// to the reference forward, causal masking (a later byte never changes an earlier logit), the
// decoder over context_store KV shards equal to the full forward (max abs diff <= 1e-5), and
// a tiny model that trains in seconds on the fortunes corpus and beats the unigram baseline.

#include "experts/model/checkpoint.hpp"
#include "experts/train/backprop.hpp"
#include "experts/model/lm_decode.hpp"
#include "experts/model/lm_forward.hpp"
#include "experts/train/lm_task.hpp"
#include "experts/base/rng.hpp"
#include "gradient_check.hpp"
#include "random_model.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>

using namespace eoe;
using namespace eoe::experts;

namespace {

using dmatrix = basic_matrix<double>;


std::string source_dir() {
  const char* s = std::getenv("EOE_SOURCE_DIR");
  return s ? s : ".";
}

/// Every kind of layer an LM can hold, small.
const char* every_kind = R"(
model = { kind = "lm", vocab = 16, context = 6, dim = 8, seed = 3 }
layer = [
  { kind = "attention", heads = 2, rope_base = 100 },
  { kind = "eoe", experts = 4, hidden = 6, rank = 3, k = 2 },
  { kind = "attention", heads = 1 },
  { kind = "router", experts = 3, hidden = 5, k = 2 },
  { kind = "dense", hidden = 6, activation = "gelu" },
  { kind = "hash", experts = 2, hidden = 4, k = 1 },
  { kind = "eoe", experts = 3, hidden = 4, rank = 2, mode = "threshold", tau = 0 },
  { kind = "eoe", experts = 3, hidden = 4, rank = 2, k = 1, steps = 2, bias = false },
]
)";

using test::config_of;
using test::random_model;


void median_thresholds(basic_model<double>& m, std::span<const std::uint8_t> windows,
                       Eigen::Index seq_len) {
  test::median_thresholds(m, lm_loss_and_gradient<double>(m, windows, seq_len, {}, nullptr).layers);
}

const text_corpus& corpus() {
  static const text_corpus c = [] {
    auto r = load_text_corpus();
    if (!r)
      FAIL(r.error().message);
    return *r;
  }();
  return c;
}

} // namespace

TEST_CASE("a language model's tensors have stable names and shapes", "[lm]") {
  const auto c = config_of(R"(
model = { kind = "lm", vocab = 256, context = 8, dim = 4 }
layer = [
  { kind = "attention", heads = 2 },
  { kind = "dense", hidden = 3, bias = false },
]
)");
  const std::vector<tensor_shape> want{
    {"embed.w", 256, 4},        {"layer.0.norm", 1, 4}, {"layer.0.wq", 4, 4},
    {"layer.0.wk", 4, 4},       {"layer.0.wv", 4, 4},   {"layer.0.wo", 4, 4},
    {"layer.1.norm", 1, 4},     {"layer.1.expert.0.w1", 4, 3}, {"layer.1.expert.0.w2", 3, 4},
    {"head.norm", 1, 4},        {"head.w", 4, 256},     {"head.b", 1, 256}};
  CHECK(parameter_shapes(c) == want);
  auto m = init_model(c);
  CHECK(m.layers[0].norm.isOnes());
  CHECK(m.final_norm.isOnes());
  // The token embedding is N(0, 1): a row is what its token puts into a pre-normed stream.
  CHECK(std::sqrt(m.embed_w.squaredNorm() / static_cast<double>(m.embed_w.size())) == Approx(1.0).epsilon(0.1));
  // A checkpoint round-trips unchanged.
  auto back = parse_checkpoint(checkpoint_bytes(m), "mem");
  REQUIRE(back.has_value());
  CHECK(back->config == c);
  std::vector<const matrix*> a;
  for_each_parameter(m, [&](const std::string&, const matrix& t) { a.push_back(&t); });
  size_t i = 0, differing = 0;
  for_each_parameter(*back, [&](const std::string&, const matrix& t) { differing += t != *a[i++]; });
  CHECK(differing == 0);
}

TEST_CASE("gradients of a whole language model match finite differences", "[lm]") {
  auto m = random_model<double>(config_of(every_kind), 5);
  const Eigen::Index seq_len = 6;
  const auto windows = test::random_bytes(3 * (seq_len + 1), 16, 6);
  median_thresholds(m, windows, seq_len);
  const loss_options opt{.balance_coef = 0.1, .z_coef = 0.01, .label_smoothing = 0.1};
  basic_model<double> g;
  lm_loss_and_gradient<double>(m, windows, seq_len, opt, &g);
  const auto st = test::gradient_check(
    m, g,
    [&](const basic_model<double>& at) {
      return lm_loss_and_gradient<double>(at, windows, seq_len, opt, nullptr).loss;
    },
    10, {".tau", ".select_bias"}); // calibrated, not learned
  const auto& [checked, worst, worst_at] = st;
  INFO("worst: " << worst_at);
  CHECK(checked > 300);
  CHECK(worst <= 1e-4);
  // The embedding rows of tokens that never occur get no gradient; the others do.
  CHECK(g.embed_w.row(windows[0]).norm() > 0);
}

TEST_CASE("the training forward computes the reference forward's logits", "[lm]") {
  const auto c = config_of(every_kind);
  const auto m = random_model<float>(c, 7);
  const Eigen::Index seq_len = 6;
  const auto windows = test::random_bytes(4 * (seq_len + 1), 16, 8);
  auto train = lm_loss_and_gradient<float>(m, windows, seq_len, {}, nullptr);
  std::vector<std::uint8_t> input;
  for (size_t b = 0; b < 4; ++b)
    input.insert(input.end(), windows.begin() + b * 7, windows.begin() + b * 7 + 6);
  auto be = kernels::make_cpu_backend();
  auto ref = lm_forward(*be, m, input, seq_len);
  REQUIRE(ref.has_value());
  CHECK((train.logits - ref->logits).cwiseAbs().maxCoeff() <= 1e-5f);
  REQUIRE(train.layers.size() == ref->layers.size());
  REQUIRE(train.layers.size() == 7); // expert layers as run: the recurrent one twice
  for (size_t l = 0; l < train.layers.size(); ++l)
    CHECK(train.layers[l].active.experts == ref->layers[l].active.experts);
}

TEST_CASE("causal masking: changing a later byte never changes earlier logits", "[lm]") {
  // In float64: an expert's rows are one GEMM whose row count follows the routing of every
  // token, so a later token may move an earlier logit by a rounding error (exactly 0 through
  // attention alone: test_attention), never by more.
  const auto c = config_of(every_kind);
  const auto m = random_model<double>(c, 9);
  const auto tokens = test::random_bytes(7, 16, 10); // 6 inputs and a target
  auto logits_of = [&](const std::vector<std::uint8_t>& t) {
    return lm_loss_and_gradient<double>(m, t, 6, {}, nullptr).logits;
  };
  const dmatrix base = logits_of(tokens);
  for (size_t at = 0; at < 6; ++at) {
    auto changed = tokens;
    changed[at] = static_cast<std::uint8_t>((changed[at] + 5) % 16);
    const dmatrix out = logits_of(changed);
    const auto rows = static_cast<Eigen::Index>(at);
    INFO("changed byte " << at);
    if (rows > 0)
      CHECK((out.topRows(rows) - base.topRows(rows)).cwiseAbs().maxCoeff() <= 1e-13);
    CHECK((out.row(rows) - base.row(rows)).cwiseAbs().maxCoeff() > 1e-4);
    if (at + 1 < 6) // attention carries the change to the positions after it
      CHECK((out.bottomRows(1) - base.bottomRows(1)).cwiseAbs().maxCoeff() > 1e-6);
  }
}

TEST_CASE("the decoder over KV shards equals the full forward at every position", "[lm]") {
  const auto c = config_of(R"(
model = { kind = "lm", vocab = 256, context = 20, dim = 16, seed = 11 }
layer = [
  { kind = "attention", heads = 4 },
  { kind = "eoe", experts = 4, hidden = 12, rank = 4, k = 2 },
  { kind = "attention", heads = 2 },
  { kind = "router", experts = 4, hidden = 8, k = 2 },
  { kind = "hash", experts = 2, hidden = 8, k = 1 },
]
)");
  const auto m = random_model<float>(c, 12);
  const std::string text = "The decoder reads it.";
  std::vector<std::uint8_t> tokens(text.begin(), text.begin() + 20);
  auto be = kernels::make_cpu_backend();
  auto full = lm_forward(*be, m, tokens);
  REQUIRE(full.has_value());
  lm_decoder dec{m, kv_layout{6, 4}}; // shards of 6 positions: 4 shards per attention layer
  float worst = 0;
  size_t decisions_differ = 0;
  for (size_t p = 0; p < tokens.size(); ++p) {
    const matrix logits = dec.step(tokens[p]);
    worst = std::max(worst, (logits - full->logits.row(static_cast<Eigen::Index>(p))).cwiseAbs().maxCoeff());
    for (size_t l = 0; l < full->layers.size(); ++l) {
      auto want = full->layers[l].active.experts_of(p);
      auto got = dec.last_layers()[l].active.experts_of(0);
      decisions_differ += !std::equal(want.begin(), want.end(), got.begin(), got.end());
    }
  }
  CHECK(worst <= 1e-5f);
  CHECK(decisions_differ == 0);
  CHECK(dec.position() == 20);
  CHECK(dec.shards(0).size() == 4);
  CHECK(dec.shards(2).size() == 4);
  CHECK(dec.shards(1).empty()); // an expert layer keeps no K/V
  CHECK(dec.shards(2).back().end() == 20);
  // Generation: the same seed repeats itself; greedy follows the forward's argmax.
  sampling s{.tokens = 12, .temperature = 0.8, .seed = 3};
  const auto a = generate(m, "The", s), b = generate(m, "The", s);
  CHECK(a == b);
  CHECK(a.size() == 12);
  s.temperature = 0;
  const auto greedy = generate(m, "The", s);
  std::vector<std::uint8_t> seq{'T', 'h', 'e'};
  seq.insert(seq.end(), greedy.begin(), greedy.end() - 1);
  auto check = lm_forward(*be, m, seq);
  REQUIRE(check.has_value());
  for (size_t i = 0; i < greedy.size(); ++i) {
    Eigen::Index best = 0;
    check->logits.row(static_cast<Eigen::Index>(i + 2)).maxCoeff(&best);
    CHECK(static_cast<unsigned char>(greedy[i]) == best);
  }
  // Past the context (20) generation starts over on the last 10 bytes: greedy then follows
  // the full forward of exactly those windows.
  s.tokens = 45;
  const auto longer = generate(m, "The", s);
  REQUIRE(longer.size() == 45);
  std::string so_far = "The", window = "The";
  size_t mismatches = 0;
  for (size_t i = 0; i < longer.size(); ++i) {
    const std::vector<std::uint8_t> w(window.begin(), window.end());
    auto out = lm_forward(*be, m, w);
    REQUIRE(out.has_value());
    Eigen::Index best = 0;
    out->logits.row(out->logits.rows() - 1).maxCoeff(&best);
    mismatches += static_cast<unsigned char>(longer[i]) != best;
    so_far.push_back(longer[i]);
    window = window.size() == 20 ? so_far.substr(so_far.size() - 10) : window + longer[i];
  }
  CHECK(mismatches == 0);
}

TEST_CASE("language-model input and the classifier paths are checked", "[lm]") {
  const auto c = config_of(every_kind);
  const auto m = init_model(c);
  auto be = kernels::make_cpu_backend();
  const std::vector<std::uint8_t> bad{1, 2, 16};
  auto r = lm_forward(*be, m, bad);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message == "lm_forward: token 16 at 2 is not below vocab = 16");
  const std::vector<std::uint8_t> long_seq(7, 1);
  CHECK(lm_forward(*be, m, long_seq).error().message
        == "lm_forward: sequences of 7 tokens are longer than the context of 'model' (6)");
  CHECK(forward(*be, m, matrix::Zero(2, 8)).error().message
        == "forward: 'model' is a language model: it reads byte sequences (experts/model/lm_forward.hpp)");
  CHECK_THROWS_AS(lm_decoder(init_model(default_model_config())), std::invalid_argument);
}

TEST_CASE("evaluation reads consecutive windows: the training loss of the same windows",
          "[lm]") {
  const auto c = config_of(every_kind);
  const auto m = random_model<float>(c, 13);
  const auto bytes = test::random_bytes(3 * 6 + 1 + 4, 16, 14); // 3 windows and 4 bytes left over
  const std::string text(bytes.begin(), bytes.end());
  auto ev = evaluate_lm(m, text, 0, 2); // batches of 2 windows: the last one alone
  REQUIRE(ev.has_value());
  CHECK(ev->examples == 18u);
  CHECK(ev->language_model);
  std::vector<std::uint8_t> windows; // window i: bytes [6 i, 6 i + 7)
  for (size_t i = 0; i < 3; ++i)
    windows.insert(windows.end(), bytes.begin() + 6 * i, bytes.begin() + 6 * i + 7);
  auto train = lm_loss_and_gradient<float>(m, windows, 6, {}, nullptr);
  CHECK(ev->loss == Approx(train.cross_entropy).epsilon(1e-5));
  CHECK(ev->accuracy == Approx(static_cast<double>(train.correct) / 18.0));
  REQUIRE(ev->layers.size() == 7);
  CHECK(ev->layers[0].mean_active == Approx(2.0)); // eoe top-2
  CHECK(evaluate_lm(m, text, 2)->examples == 12u);
  CHECK(evaluate_lm(m, text.substr(0, 6)).error().message
        == "evaluate_lm: 6 bytes of text hold no window of context + 1 = 7 bytes");
  // The unigram baseline, by hand: add-one counts of tokens 0..3 are 3, 2, 1, 1 of 7.
  CHECK(unigram_loss(std::string("\0\0\1", 3), std::string("\0\1", 2), 4)
        == Approx(-(std::log(3.0 / 7) + std::log(2.0 / 7)) / 2));
}

TEST_CASE("a tiny language model trains in seconds and beats the unigram baseline", "[lm][train]") {
  auto f = load_config_file(source_dir() + "/configs/lm/tiny.toml");
  REQUIRE(f.has_value());
  const auto& data = corpus();
  auto m = init_model(f->model);
  std::vector<epoch_report> reports;
  long steps = 0;
  train_hooks hooks;
  hooks.on_step = [&](long, long, double) { ++steps; };
  hooks.on_epoch = [&](const epoch_report& r) { reports.push_back(r); };
  REQUIRE(train_lm(m, f->train, data, hooks).has_value());
  REQUIRE(reports.size() == 3);
  CHECK(steps == 3 * (4096 / 16));
  const auto& v = reports.back().test;
  CHECK(v.language_model);
  CHECK(v.examples == 128u * 32u);
  const double unigram = unigram_loss(data.train, data.validation.substr(0, 128 * 32 + 1));
  INFO("validation loss " << v.loss << " nats/byte, unigram " << unigram);
  CHECK(unigram > 2.8); // English bytes: about 4.3 bits each
  CHECK(v.loss < unigram - 0.4);
  CHECK(reports[2].test.loss < reports[0].test.loss);
  CHECK(v.perplexity() == Approx(std::exp(v.loss)));
  REQUIRE(v.layers.size() == 1); // the EoE layer; attention layers have no diagnostics
  CHECK(v.layers[0].mean_active == Approx(2.0));
  CHECK(v.layers[0].config_layer == 1);
}

TEST_CASE("the same seed repeats a language-model run exactly", "[lm][train]") {
  auto f = load_config_file(source_dir() + "/configs/lm/tiny.toml");
  REQUIRE(f.has_value());
  f->train.epochs = 1;
  f->train.train_limit = 64;
  f->train.test_limit = 4;
  auto a = init_model(f->model), b = init_model(f->model);
  REQUIRE(train_lm(a, f->train, corpus()).has_value());
  REQUIRE(train_lm(b, f->train, corpus()).has_value());
  CHECK(a.layers[0].attention.wq == b.layers[0].attention.wq);
  CHECK(a.head_w == b.head_w);
  f->train.seed = 2;
  auto c = init_model(f->model);
  REQUIRE(train_lm(c, f->train, corpus()).has_value());
  CHECK(c.head_w != a.head_w);
}

TEST_CASE("sampling: greedy takes the argmax, top-p draws only from the nucleus", "[lm]") {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  matrix logits(1, 4);
  logits << std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f);
  rng r{9};
  sampling s;
  s.temperature = 0;
  CHECK(sample_token(logits, s, r) == 0);
  s.temperature = 1;
  s.top_p = 0.9; // 0.5 + 0.3 + 0.15 = 0.95 reaches it: tokens 0..2, never 3
  std::array<int, 4> seen{};
  constexpr int draws = 4000;
  for (int i = 0; i < draws; ++i)
    ++seen[static_cast<size_t>(sample_token(logits, s, r))];
  CHECK(seen[3] == 0);
  // Renormalised over the nucleus: 0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95 (within 4 sigma).
  CHECK(std::abs(seen[0] / double(draws) - 0.5 / 0.95) < 0.035);
  CHECK(std::abs(seen[1] / double(draws) - 0.3 / 0.95) < 0.035);
  CHECK(std::abs(seen[2] / double(draws) - 0.15 / 0.95) < 0.025);
  s.top_p = 0.4; // the most likely token alone holds 0.5
  for (int i = 0; i < 100; ++i)
    CHECK(sample_token(logits, s, r) == 0);
  s.top_p = 1; // every token, 3 included
  seen = {};
  for (int i = 0; i < draws; ++i)
    ++seen[static_cast<size_t>(sample_token(logits, s, r))];
  CHECK(seen[3] > 100);
}
