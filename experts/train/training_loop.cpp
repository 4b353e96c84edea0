#include "experts/train/training_loop.hpp"

#include "experts/base/parallel.hpp"
#include "experts/nn/hash_routing.hpp"
#include "experts/train/adamw.hpp"
#include "experts/train/train_step.hpp"

#include <algorithm>
#include <chrono>

namespace eoe::experts {

namespace {

struct slice_work {
  long begin = 0, rows = 0;
  step_result<float> res;
  model grad;
};

} // namespace

expected<void> run_training(model& m, const train_config& t, training_task& task,
                            const train_hooks& hooks) {
  const auto& c = m.config;
  fix_gemm_blocking(); // the same sums on every machine
  const long n = task.examples();
  if (n <= 0)
    return fail(errc::data_invalid, "train: no training examples");
  const long batches = (n + t.batch - 1) / t.batch;
  const long total = batches * t.epochs;

  adamw opt{c, t};
  loss_options lo{.balance_coef = t.balance_coef,
                  .z_coef = t.z_coef,
                  .score_balance_coef = t.score_balance_coef,
                  .label_smoothing = t.label_smoothing,
                  .dropout = t.dropout};
  model grad = zero_model(c);
  std::vector<slice_work> slices(batch_slices);
  std::vector<std::uint8_t> zeros;
  long step = 0;
  double elapsed = 0;
  const eigen_single_threaded single; // the batch slices are the parallelism
  for (int epoch = 1; epoch <= t.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    task.start_epoch();
    stats_accumulator stats{c, task.classes()};
    double loss_sum = 0, correct = 0, lr = 0;
    for (long b = 0; b < batches; ++b, ++step) {
      const long rows = std::min<long>(t.batch, n - b * t.batch);
      task.load_batch(b * t.batch, rows);
      lo.dropout_seed = stable_hash(t.seed, static_cast<std::uint64_t>(step));
      // The batch's loss and gradient as `batch_slices` slices in parallel, one thread each.
      const long per = (rows + batch_slices - 1) / batch_slices;
      for (int s = 0; s < batch_slices; ++s) {
        slices[s].begin = std::min<long>(rows, s * per);
        slices[s].rows = std::min<long>(per, rows - slices[s].begin);
      }
      parallel_for(slices.size(), [&](size_t s) {
        auto& w = slices[s];
        if (w.rows == 0)
          return;
        loss_options slice_lo = lo;
        slice_lo.dropout_seed = stable_hash(lo.dropout_seed, s); // one mask stream per slice
        w.res = task.slice_loss(m, w.begin, w.rows, slice_lo, &w.grad);
      });
      std::vector<const model*> grads;
      std::vector<long> counts;
      for (auto& w : slices) {
        grads.push_back(&w.grad);
        counts.push_back(w.rows);
      }
      const double norm = combine_gradients(grad, grads, counts, rows);
      std::vector<layer_trace<float>> traces;
      double batch_loss = 0;
      for (auto& w : slices) {
        if (w.rows == 0)
          continue;
        batch_loss += static_cast<double>(w.rows) / static_cast<double>(rows) * w.res.loss;
        correct += static_cast<double>(w.res.correct);
        std::vector<const basic_activation_set<float>*> sets;
        for (auto& l : w.res.layers)
          sets.push_back(&l.active);
        auto labels = task.labels(w.begin, w.rows);
        if (labels.empty()) {
          zeros.assign(static_cast<size_t>(w.res.predicted), 0);
          labels = zeros;
        }
        stats.add<float>(sets, labels);
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
    rep.train_accuracy =
      correct / (static_cast<double>(n) * static_cast<double>(task.predictions_per_example()));
    rep.lr = lr;
    rep.train_layers = stats.finish();
    single.suspend(); // the evaluation uses every thread
    auto ev = task.evaluate(m);
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
