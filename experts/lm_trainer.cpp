#include "experts/lm_trainer.hpp"

#include "experts/adamw.hpp"
#include "experts/hash_routing.hpp"
#include "experts/lm_backprop.hpp"
#include "experts/lm_forward.hpp"
#include "experts/parallel.hpp"
#include "experts/rng.hpp"
#include "experts/train_step.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace eoe::experts {

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct shard_work {
  long begin = 0, rows = 0; ///< windows
  lm_step_result<float> res;
  model grad;
};

/// A batch's loss and gradient as `batch_shards` slices of its windows in parallel (see
/// experts/train_step.hpp).
void sharded_step(const model& m, const std::vector<std::uint8_t>& windows, long count,
                  Eigen::Index seq_len, const loss_options& lo, std::vector<shard_work>& shards) {
  const long per = (count + batch_shards - 1) / batch_shards;
  shards.resize(batch_shards);
  for (int s = 0; s < batch_shards; ++s) {
    shards[s].begin = std::min<long>(count, s * per);
    shards[s].rows = std::min<long>(per, count - shards[s].begin);
  }
  const auto width = static_cast<size_t>(seq_len + 1);
  parallel_for(shards.size(), [&](size_t s) {
    auto& w = shards[s];
    if (w.rows == 0)
      return;
    loss_options shard_lo = lo;
    shard_lo.dropout_seed = stable_hash(lo.dropout_seed, s);
    std::span<const std::uint8_t> part{windows.data() + w.begin * width, w.rows * width};
    w.res = lm_loss_and_gradient<float>(m, part, seq_len, shard_lo, &w.grad);
  });
}

} // namespace

double unigram_loss(std::string_view train, std::string_view text, int vocab) {
  std::vector<double> count(static_cast<size_t>(vocab), 1.0); // add-one
  double total = vocab;
  for (unsigned char ch : train)
    if (ch < vocab) {
      count[ch] += 1;
      total += 1;
    }
  double loss = 0;
  for (unsigned char ch : text)
    loss -= std::log((ch < vocab ? count[ch] : 1.0) / total);
  return text.empty() ? 0 : loss / static_cast<double>(text.size());
}

expected<eval_result> evaluate_lm(const model& m, std::string_view text, int limit, int batch) {
  const auto& c = m.config;
  if (!c.is_lm())
    return fail(errc::data_invalid, "evaluate_lm: '" + c.name + "' is not a language model");
  const auto t = static_cast<size_t>(c.context);
  size_t windows = text.size() > t ? (text.size() - 1) / t : 0;
  if (limit > 0)
    windows = std::min(windows, static_cast<size_t>(limit));
  if (windows == 0)
    return fail(errc::data_invalid, "evaluate_lm: " + std::to_string(text.size())
                                      + " bytes of text hold no window of context + 1 = "
                                      + std::to_string(t + 1) + " bytes");
  const auto bytes = bytes_of(text);
  for (size_t i = 0; i <= windows * t; ++i)
    if (bytes[i] >= c.vocab)
      return fail(errc::data_invalid, "evaluate_lm: byte " + std::to_string(bytes[i]) + " at "
                                        + std::to_string(i) + " is not below vocab = "
                                        + std::to_string(c.vocab));
  // Batches run on their own threads (Eigen single-threaded: its threads only spin on GEMMs
  // this small), then add up in batch order, so the result does not depend on the threads.
  struct part {
    double loss = 0;
    size_t correct = 0;
    std::vector<layer_record> layers;
    std::string error;
  };
  const size_t batches = (windows + static_cast<size_t>(batch) - 1) / static_cast<size_t>(batch);
  std::vector<part> parts(batches);
  {
    const eigen_single_threaded single;
    parallel_for(batches, [&](size_t b) {
      auto& p = parts[b];
      const size_t w0 = b * static_cast<size_t>(batch);
      const size_t rows = std::min(static_cast<size_t>(batch), windows - w0);
      const auto input = bytes.subspan(w0 * t, rows * t);
      auto be = kernels::make_cpu_backend(); // one per thread
      auto out = lm_forward(*be, m, input, static_cast<Eigen::Index>(t));
      if (!out) {
        p.error = out.error().message;
        return;
      }
      for (size_t i = 0; i < input.size(); ++i) {
        const auto target = bytes[w0 * t + i + 1]; // windows are consecutive: the next byte
        const auto row = out->logits.row(static_cast<Eigen::Index>(i));
        const double mx = row.maxCoeff();
        double sum = 0;
        for (Eigen::Index k = 0; k < row.size(); ++k)
          sum += std::exp(double(row(k)) - mx);
        p.loss += mx + std::log(sum) - row(target);
        Eigen::Index best = 0;
        row.maxCoeff(&best);
        p.correct += best == target;
      }
      p.layers = std::move(out->layers);
    });
  }
  stats_accumulator stats{c, 1};
  eval_result r;
  r.language_model = true;
  double loss = 0;
  size_t correct = 0;
  std::vector<std::uint8_t> zeros;
  for (auto& p : parts) {
    if (!p.error.empty())
      return fail(errc::data_invalid, "evaluate_lm: " + p.error);
    loss += p.loss;
    correct += p.correct;
    std::vector<const activation_set*> sets;
    for (auto& l : p.layers)
      sets.push_back(&l.active);
    zeros.assign(sets.empty() ? 0 : sets[0]->tokens(), 0);
    stats.add<float>(sets, zeros);
  }
  r.examples = windows * t;
  r.loss = loss / static_cast<double>(r.examples);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(r.examples);
  r.layers = stats.finish();
  r.expert_flops = stats_accumulator::total_expert_flops(r.layers);
  return r;
}

expected<void> train_lm(model& m, const train_config& t, const text_corpus& data,
                        const train_hooks& hooks) {
  const auto& c = m.config;
  if (!c.is_lm())
    return fail(errc::data_invalid, "train_lm: '" + c.name + "' is not a language model");
  const auto len = static_cast<size_t>(c.context);
  if (data.train.size() < len + 1)
    return fail(errc::data_invalid, "train_lm: " + std::to_string(data.train.size())
                                      + " bytes of training text hold no window of context + 1 = "
                                      + std::to_string(len + 1) + " bytes");
  for (size_t i = 0; i < data.train.size(); ++i)
    if (static_cast<unsigned char>(data.train[i]) >= c.vocab)
      return fail(errc::data_invalid, "train_lm: byte "
                                        + std::to_string(static_cast<unsigned char>(data.train[i]))
                                        + " at " + std::to_string(i)
                                        + " of the training text is not below vocab = "
                                        + std::to_string(c.vocab));
  const long n = t.train_limit > 0 ? t.train_limit : static_cast<long>(data.train.size() / len);
  const long batches = (n + t.batch - 1) / t.batch;
  const long total = batches * t.epochs;
  const auto text = bytes_of(data.train);
  const auto starts = static_cast<std::uint64_t>(data.train.size() - len); // offsets 0..size-len-1

  adamw opt{c, t};
  loss_options lo{.balance_coef = t.balance_coef,
                  .z_coef = t.z_coef,
                  .score_balance_coef = t.score_balance_coef,
                  .label_smoothing = t.label_smoothing,
                  .dropout = t.dropout};
  rng pick{t.seed};
  model grad = zero_model(c);
  std::vector<shard_work> shards;
  std::vector<std::uint8_t> windows;
  long step = 0;
  double elapsed = 0;
  const eigen_single_threaded single; // the batch slices are the parallelism
  for (int epoch = 1; epoch <= t.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    stats_accumulator stats{c, 1};
    double loss_sum = 0, correct = 0, lr = 0;
    std::vector<std::uint8_t> zeros;
    for (long b = 0; b < batches; ++b, ++step) {
      const long rows = std::min<long>(t.batch, n - b * t.batch);
      windows.resize(static_cast<size_t>(rows) * (len + 1));
      for (long r = 0; r < rows; ++r) {
        const auto at = static_cast<std::ptrdiff_t>(pick.next() % starts);
        std::copy(text.begin() + at, text.begin() + at + static_cast<std::ptrdiff_t>(len + 1),
                  windows.begin() + r * static_cast<std::ptrdiff_t>(len + 1));
      }
      lo.dropout_seed = stable_hash(t.seed, static_cast<std::uint64_t>(step));
      sharded_step(m, windows, rows, static_cast<Eigen::Index>(len), lo, shards);
      std::vector<const model*> grads;
      std::vector<long> counts;
      for (auto& w : shards) {
        grads.push_back(&w.grad);
        counts.push_back(w.rows);
      }
      const double norm = combine_gradients(grad, grads, counts, rows);
      std::vector<layer_trace<float>> traces;
      double batch_loss = 0;
      for (auto& w : shards) {
        if (w.rows == 0)
          continue;
        batch_loss += static_cast<double>(w.rows) / static_cast<double>(rows) * w.res.loss;
        correct += static_cast<double>(w.res.correct);
        std::vector<const basic_activation_set<float>*> sets;
        for (auto& l : w.res.layers)
          sets.push_back(&l.active);
        zeros.assign(static_cast<size_t>(w.res.predicted), 0);
        stats.add<float>(sets, zeros);
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
    rep.train_accuracy = correct / (static_cast<double>(n) * static_cast<double>(len));
    rep.lr = lr;
    rep.train_layers = stats.finish();
    auto ev = evaluate_lm(m, data.validation, t.test_limit);
    if (!ev)
      return eoe::unexpected(ev.error());
    rep.test = std::move(*ev);
    if (hooks.on_epoch)
      hooks.on_epoch(rep);
  }
  return {};
}

} // namespace eoe::experts
