#include "experts/train/lm_task.hpp"

#include "experts/train/backprop.hpp"
#include "experts/model/lm_forward.hpp"
#include "experts/base/parallel.hpp"
#include "experts/base/rng.hpp"
#include "experts/train/train_step.hpp"

#include <algorithm>
#include <cmath>

namespace eoe::experts {

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

/// Windows of context + 1 bytes drawn at random offsets of the training text by the run's own
/// generator; every position predicts the byte after it.
class lm_task final : public training_task {
public:
  lm_task(const model& m, const train_config& t, const text_corpus& data)
    : t_(t), data_(data), len_(static_cast<size_t>(m.config.context)), text_(bytes_of(data.train)),
      pick_{t.seed} {}

  long examples() const override {
    return t_.train_limit > 0 ? t_.train_limit : static_cast<long>(data_.train.size() / len_);
  }
  long predictions_per_example() const override {
    return static_cast<long>(len_);
  }
  int classes() const override {
    return 1;
  }
  void load_batch(long, long rows) override {
    const auto starts = static_cast<std::uint64_t>(data_.train.size() - len_); // 0..size-len-1
    const auto width = static_cast<std::ptrdiff_t>(len_ + 1);
    windows_.resize(static_cast<size_t>(rows) * (len_ + 1));
    for (long r = 0; r < rows; ++r) {
      const auto at = static_cast<std::ptrdiff_t>(pick_.next() % starts);
      std::copy(text_.begin() + at, text_.begin() + at + width, windows_.begin() + r * width);
    }
  }
  step_result<float> slice_loss(const model& m, long begin, long rows, const loss_options& lo,
                                model* grad) const override {
    const auto width = len_ + 1;
    std::span<const std::uint8_t> part{windows_.data() + begin * width, rows * width};
    return lm_loss_and_gradient<float>(m, part, static_cast<Eigen::Index>(len_), lo, grad);
  }
  std::span<const std::uint8_t> labels(long, long) const override {
    return {};
  }
  expected<eval_result> evaluate(const model& m) const override {
    return evaluate_lm(m, data_.validation, t_.test_limit);
  }

private:
  const train_config& t_;
  const text_corpus& data_;
  size_t len_;
  std::span<const std::uint8_t> text_;
  rng pick_;
  std::vector<std::uint8_t> windows_;
};

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
  lm_task task{m, t, data};
  return run_training(m, t, task, hooks);
}

} // namespace eoe::experts
