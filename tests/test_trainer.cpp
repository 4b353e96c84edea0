// Training end to end on real Fashion-MNIST data: a tiny config learns far above chance in
// seconds, a fixed seed repeats a run bit for bit, and the optimiser and schedule keep their
// definitions.

#include "experts/train/adamw.hpp"
#include "experts/train/classifier_task.hpp"

#include <catch2/catch.hpp>

using namespace eoe;
using namespace eoe::experts;

namespace {

config_file tiny() {
  auto f = parse_config_file(R"(
model = { name = "tiny", input_dim = 784, dim = 32, classes = 10, seed = 4 }
layer = [
  { kind = "eoe", experts = 4, hidden = 32, rank = 8, k = 2 },
  { kind = "eoe", experts = 4, hidden = 32, rank = 8, mode = "threshold", tau = 0 },
]
[train]
epochs = 2
batch = 64
lr = 3e-3
train_limit = 3000
test_limit = 1000
threshold_rate = 0.3
augment = true
)",
                             "tiny");
  REQUIRE(f.has_value());
  return *f;
}

struct data {
  labelled_images train, test;
};

const data& fashion() {
  static const data d = [] {
    auto tr = load_fashion_mnist("train", 3000);
    auto te = load_fashion_mnist("test", 1000);
    REQUIRE((tr && te));
    return data{std::move(*tr), std::move(*te)};
  }();
  return d;
}

} // namespace

TEST_CASE("a tiny EoE config trains far above chance in seconds", "[train]") {
  auto f = tiny();
  auto m = init_model(f.model);
  std::vector<epoch_report> reports;
  long steps = 0;
  train_hooks hooks;
  hooks.on_step = [&](long, long, double) { ++steps; };
  hooks.on_epoch = [&](const epoch_report& r) { reports.push_back(r); };
  REQUIRE(train_model(m, f.train, fashion().train, fashion().test, hooks).has_value());
  REQUIRE(reports.size() == 2);
  CHECK(steps == 2 * ((3000 + 63) / 64));
  CHECK(reports[1].train_loss < reports[0].train_loss);
  // Chance is 10%; two short epochs on 3,000 images reach well above 60%.
  CHECK(reports[1].test.accuracy >= 0.65);
  // The threshold layer was calibrated towards its target rate of 0.3 per expert.
  const auto& thr = reports[1].test.layers[1];
  CHECK(thr.mean_active > 4 * 0.15);
  CHECK(thr.mean_active < 4 * 0.45);
  // The topk layer activates exactly k experts per token.
  CHECK(reports[1].test.layers[0].mean_active == Approx(2.0));
}

TEST_CASE("the same seed repeats a run exactly", "[train]") {
  auto f = tiny();
  f.train.epochs = 1;
  f.train.train_limit = 600;
  auto a = init_model(f.model), b = init_model(f.model);
  labelled_images small{fashion().train.images.topRows(600),
                        {fashion().train.labels.begin(), fashion().train.labels.begin() + 600}};
  labelled_images eval{fashion().test.images.topRows(100),
                       {fashion().test.labels.begin(), fashion().test.labels.begin() + 100}};
  REQUIRE(train_model(a, f.train, small, eval).has_value());
  REQUIRE(train_model(b, f.train, small, eval).has_value());
  size_t differing = 0;
  std::vector<const matrix*> bs;
  for_each_parameter(b, [&](const std::string&, const matrix& t) { bs.push_back(&t); });
  size_t i = 0;
  for_each_parameter(a, [&](const std::string&, const matrix& t) { differing += t != *bs[i++]; });
  CHECK(differing == 0);
  // Another seed gives another run.
  auto c = init_model(f.model);
  f.train.seed = 2;
  REQUIRE(train_model(c, f.train, small, eval).has_value());
  CHECK(c.head_w != a.head_w);
}

TEST_CASE("selection biases balance the top-k load without an auxiliary loss", "[train]") {
  auto f = tiny();
  f.model.layers.pop_back(); // the topk layer only
  f.train.epochs = 1;
  auto plain = init_model(f.model), balanced = init_model(f.model);
  double cv_plain = 0, cv_balanced = 0;
  train_hooks h1, h2;
  h1.on_epoch = [&](const epoch_report& r) { cv_plain = r.test.layers[0].load_cv; };
  h2.on_epoch = [&](const epoch_report& r) { cv_balanced = r.test.layers[0].load_cv; };
  REQUIRE(train_model(plain, f.train, fashion().train, fashion().test, h1).has_value());
  CHECK(plain.layers[0].select_bias.isZero());
  f.train.balance_bias_rate = 0.05;
  REQUIRE(train_model(balanced, f.train, fashion().train, fashion().test, h2).has_value());
  CHECK_FALSE(balanced.layers[0].select_bias.isZero());
  INFO("load CV plain " << cv_plain << ", balanced " << cv_balanced);
  CHECK(cv_balanced < cv_plain);
  CHECK(cv_balanced < 0.3);
}

TEST_CASE("training rejects data that does not fit the model", "[train]") {
  auto f = tiny();
  auto m = init_model(f.model);
  labelled_images wrong{matrix::Zero(4, 10), {0, 1, 2, 3}};
  auto r = train_model(m, f.train, wrong, wrong);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message == "train: examples have 10 values, the model takes 784");
  labelled_images bad_label{matrix::Zero(2, 784), {3, 12}};
  auto r2 = train_model(m, f.train, bad_label, bad_label);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().message == "train: label 12 of example 1 is not below classes = 10");
}

TEST_CASE("learning rate: linear warm-up, then cosine to the final fraction", "[train]") {
  train_config t;
  t.lr = 1.0;
  t.warmup_fraction = 0.1;
  t.final_lr_fraction = 0.1;
  CHECK(learning_rate(t, 0, 100) == Approx(0.1));
  CHECK(learning_rate(t, 9, 100) == Approx(1.0));
  CHECK(learning_rate(t, 10, 100) == Approx(1.0));
  CHECK(learning_rate(t, 55, 100) == Approx(0.55)); // half way down the cosine: (1 + 0.1) / 2
  CHECK(learning_rate(t, 100, 100) == Approx(0.1));
}

TEST_CASE("AdamW: the first step moves each weight by lr against its gradient's sign",
          "[train]") {
  auto c = tiny().model;
  train_config t;
  t.weight_decay = 0.5;
  auto m = init_model(c);
  const auto before = m;
  auto g = zero_model(c);
  g.head_w.setConstant(0.25f);
  g.head_b.setConstant(-4.0f);
  adamw opt{c, t};
  opt.step(m, g, 0.01);
  // Bias-corrected Adam's first step is lr * sign(g); weights also decay by lr * wd.
  const matrix want_w = before.head_w * (1 - 0.01f * 0.5f) - matrix::Constant(32, 10, 0.01f);
  CHECK((m.head_w - want_w).cwiseAbs().maxCoeff() < 1e-6f);
  CHECK((m.head_b - (before.head_b + matrix::Constant(1, 10, 0.01f))).cwiseAbs().maxCoeff()
        < 1e-6f); // no decay on biases
  CHECK(m.layers[1].tau == before.layers[1].tau); // thresholds are not learned
  CHECK(decays("layer.0.expert.1.a"));
  CHECK_FALSE(decays("layer.1.affinity"));
  CHECK_FALSE(learned("layer.1.tau"));
}
