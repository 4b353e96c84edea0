#include "experts/train/classifier_task.hpp"

#include "experts/base/rng.hpp"
#include "experts/data/image_augment.hpp"

#include <numeric>

namespace eoe::experts {

namespace {

/// Labelled images in an order shuffled every epoch by the run's own generator.
class classifier_task final : public training_task {
public:
  classifier_task(const model& m, const train_config& t, const labelled_images& train,
                  const labelled_images& test)
    : t_(t), train_(train), test_(test), classes_(m.config.classes),
      in_dim_(static_cast<int>(train.images.cols())), order_rng_{t.seed},
      aug_rng_{t.seed ^ 0xa5a5a5a5ull}, order_(static_cast<size_t>(train.images.rows())) {
    std::iota(order_.begin(), order_.end(), 0);
  }

  long examples() const override {
    return static_cast<long>(order_.size());
  }
  long predictions_per_example() const override {
    return 1;
  }
  int classes() const override {
    return classes_;
  }
  void start_epoch() override {
    for (long i = static_cast<long>(order_.size()) - 1; i > 0; --i) // Fisher-Yates
      std::swap(order_[i], order_[order_rng_.next() % static_cast<std::uint64_t>(i + 1)]);
  }
  void load_batch(long begin, long rows) override {
    x_.resize(rows, in_dim_);
    y_.resize(static_cast<size_t>(rows));
    ids_.resize(static_cast<size_t>(rows));
    for (long r = 0; r < rows; ++r) {
      x_.row(r) = train_.images.row(order_[begin + r]);
      y_[r] = train_.labels[order_[begin + r]];
      ids_[r] = static_cast<std::uint64_t>(order_[begin + r]); // what hash layers hash
    }
    if (t_.augment && in_dim_ == fashion_mnist_pixels)
      augment_images(x_, aug_rng_, 28, t_.augment_shift);
  }
  step_result<float> slice_loss(const model& m, long begin, long rows, const loss_options& lo,
                                model* grad) const override {
    const matrix xs = x_.middleRows(begin, rows);
    return loss_and_gradient<float>(m, xs, labels(begin, rows), lo, grad,
                                    {ids_.data() + begin, static_cast<size_t>(rows)});
  }
  std::span<const std::uint8_t> labels(long begin, long rows) const override {
    return {y_.data() + begin, static_cast<size_t>(rows)};
  }
  expected<eval_result> evaluate(const model& m) const override {
    auto be = kernels::make_cpu_backend();
    return experts::evaluate(*be, m, test_);
  }

private:
  const train_config& t_;
  const labelled_images& train_;
  const labelled_images& test_;
  int classes_, in_dim_;
  rng order_rng_, aug_rng_;
  std::vector<long> order_;
  matrix x_;
  std::vector<std::uint8_t> y_;
  std::vector<std::uint64_t> ids_; // an example's index in its data set
};

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
  classifier_task task{m, t, train, test};
  return run_training(m, t, task, hooks);
}

} // namespace eoe::experts
