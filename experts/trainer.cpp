#include "experts/trainer.hpp"

#include "experts/adamw.hpp"
#include "experts/backprop.hpp"
#include "experts/hash_routing.hpp"
#include "experts/image_augment.hpp"
#include "experts/parallel.hpp"
#include "experts/train_step.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace eoe::experts {

namespace {

struct shard_work {
  long begin = 0, rows = 0;
  step_result<float> res;
  model grad;
};

/// A batch's loss and gradient, computed as `batch_shards` slices of the batch in parallel
/// (one thread each, Eigen single-threaded) and combined weighted by slice size. Router
/// balance losses are per slice, as in data-parallel MoE training.
void sharded_step(const model& m, const matrix& x, const std::vector<std::uint8_t>& y,
                  const std::vector<std::uint64_t>& ids, const loss_options& lo,
                  std::vector<shard_work>& shards) {
  const long n = x.rows();
  const long per = (n + batch_shards - 1) / batch_shards;
  shards.resize(batch_shards);
  for (int s = 0; s < batch_shards; ++s) {
    shards[s].begin = std::min<long>(n, s * per);
    shards[s].rows = std::min<long>(per, n - shards[s].begin);
  }
  auto work = [&](size_t s) {
    auto& w = shards[s];
    if (w.rows == 0)
      return;
    loss_options shard_lo = lo;
    shard_lo.dropout_seed = stable_hash(lo.dropout_seed, s); // one mask stream per slice
    matrix xs = x.middleRows(w.begin, w.rows);
    std::span<const std::uint8_t> ys{y.data() + w.begin, static_cast<size_t>(w.rows)};
    std::span<const std::uint64_t> is{ids.data() + w.begin, static_cast<size_t>(w.rows)};
    w.res = loss_and_gradient<float>(m, xs, ys, shard_lo, &w.grad, is);
  };
  parallel_for(shards.size(), work);
}

/// The slices' gradients combined: see combine_gradients.
double combine_shards(model& grad, const std::vector<shard_work>& shards, long batch) {
  std::vector<const model*> grads;
  std::vector<long> rows;
  for (auto& w : shards) {
    grads.push_back(&w.grad);
    rows.push_back(w.rows);
  }
  return combine_gradients(grad, grads, rows, batch);
}

} // namespace

expected<void> train_model(model& m, const train_config& t, const labelled_images& train,
                           const labelled_images& test, const train_hooks& hooks) {
  const auto& c = m.config;
  const int in_dim = c.input_dim > 0 ? c.input_dim : c.dim;
  if (c.is_lm())
    return fail(errc::data_invalid, "train: '" + c.name
                                      + "' is a language model: it trains on text (train_lm)");
  if (train.images.cols() != in_dim)
    return fail(errc::data_invalid, "train: examples have " + std::to_string(train.images.cols())
                                      + " values, the model takes " + std::to_string(in_dim));
  if (c.classes <= 0)
    return fail(errc::data_invalid, "train: model '" + c.name + "' has no head (classes = 0)");
  for (size_t i = 0; i < train.labels.size(); ++i)
    if (train.labels[i] >= c.classes)
      return fail(errc::data_invalid, "train: label " + std::to_string(train.labels[i])
                                        + " of example " + std::to_string(i)
                                        + " is not below classes = " + std::to_string(c.classes));
  const long n = static_cast<long>(train.images.rows());
  if (n == 0)
    return fail(errc::data_invalid, "train: no training examples");
  const long batches = (n + t.batch - 1) / t.batch;
  const long total = batches * t.epochs;
  const bool images = in_dim == fashion_mnist_pixels;

  adamw opt{c, t};
  loss_options lo{.balance_coef = t.balance_coef,
                  .z_coef = t.z_coef,
                  .score_balance_coef = t.score_balance_coef,
                  .label_smoothing = t.label_smoothing,
                  .dropout = t.dropout};
  auto be = kernels::make_cpu_backend();
  rng order_rng{t.seed}, aug_rng{t.seed ^ 0xa5a5a5a5ull};
  std::vector<long> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  model grad = zero_model(c);
  std::vector<shard_work> shards;
  matrix x;
  std::vector<std::uint8_t> y;
  std::vector<std::uint64_t> ids; // an example's index in its data set: what hash layers hash
  long step = 0;
  double elapsed = 0;
  const eigen_single_threaded single; // the batch slices are the parallelism
  for (int epoch = 1; epoch <= t.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    for (long i = n - 1; i > 0; --i) // Fisher-Yates with the run's own generator
      std::swap(order[i], order[order_rng.next() % static_cast<std::uint64_t>(i + 1)]);
    stats_accumulator stats{c, c.classes};
    double loss_sum = 0, correct = 0;
    double lr = 0;
    for (long b = 0; b < batches; ++b, ++step) {
      const long begin = b * t.batch, rows = std::min<long>(t.batch, n - begin);
      x.resize(rows, in_dim);
      y.resize(static_cast<size_t>(rows));
      ids.resize(static_cast<size_t>(rows));
      for (long r = 0; r < rows; ++r) {
        x.row(r) = train.images.row(order[begin + r]);
        y[r] = train.labels[order[begin + r]];
        ids[r] = static_cast<std::uint64_t>(order[begin + r]);
      }
      if (t.augment && images)
        augment_images(x, aug_rng, 28, t.augment_shift);
      lo.dropout_seed = stable_hash(t.seed, static_cast<std::uint64_t>(step));
      sharded_step(m, x, y, ids, lo, shards);
      const double norm = combine_shards(grad, shards, rows);
      std::vector<layer_trace<float>> traces;
      double batch_loss = 0;
      for (auto& w : shards) {
        if (w.rows == 0)
          continue;
        batch_loss += static_cast<double>(w.rows) / static_cast<double>(rows) * w.res.loss;
        correct += w.res.correct;
        std::vector<const basic_activation_set<float>*> sets;
        for (auto& l : w.res.layers)
          sets.push_back(&l.active);
        stats.add<float>(sets, {y.data() + w.begin, static_cast<size_t>(w.rows)});
        traces.insert(traces.end(), std::make_move_iterator(w.res.layers.begin()),
                      std::make_move_iterator(w.res.layers.end()));
      }
      lr = finish_step(m, grad, norm, traces, t, opt, step, total);
      loss_sum += batch_loss * static_cast<double>(rows);
      if (hooks.on_step)
        hooks.on_step(step + 1, total, batch_loss);
    }
    epoch_report rep;
    rep.epoch = epoch;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    elapsed += rep.seconds;
    rep.elapsed = elapsed;
    rep.train_loss = loss_sum / static_cast<double>(n);
    rep.train_accuracy = correct / static_cast<double>(n);
    rep.lr = lr;
    rep.train_layers = stats.finish();
    single.suspend();
    auto ev = evaluate(*be, m, test);
    single.resume();
    if (!ev)
      return eoe::unexpected(ev.error());
    rep.test = std::move(*ev);
    if (hooks.on_epoch)
      hooks.on_epoch(rep);
  }
  return {};
}

} // namespace eoe::experts
