#include "experts/base/train_config.hpp"

#include "experts/base/toml_reader.hpp"

#include <limits>

namespace eoe::experts {

void read_train_table(table_reader& r, train_config& t) {
  auto integer = [&](const char* key, int& field, std::int64_t lo, std::int64_t hi) {
    field = static_cast<int>(r.integer(key, lo, hi, field).value_or(field));
  };
  auto number = [&](const char* key, double& field, double lo, double hi) {
    field = r.number(key, lo, hi, field).value_or(field);
  };
  integer("epochs", t.epochs, 1, 100000);
  integer("batch", t.batch, 1, 1 << 20);
  number("lr", t.lr, 0.0, 10.0);
  number("warmup_fraction", t.warmup_fraction, 0.0, 1.0);
  number("final_lr_fraction", t.final_lr_fraction, 0.0, 1.0);
  number("weight_decay", t.weight_decay, 0.0, 10.0);
  number("beta1", t.beta1, 0.0, 0.999999);
  number("beta2", t.beta2, 0.0, 0.999999999);
  number("eps", t.eps, 1e-30, 1.0);
  number("label_smoothing", t.label_smoothing, 0.0, 0.999);
  number("dropout", t.dropout, 0.0, 0.95);
  number("grad_clip", t.grad_clip, 0.0, 1e6);
  number("balance_coef", t.balance_coef, 0.0, 1000.0);
  number("z_coef", t.z_coef, 0.0, 1000.0);
  number("threshold_rate", t.threshold_rate, 1e-6, 1.0);
  number("balance_bias_rate", t.balance_bias_rate, 0.0, 10.0);
  number("score_balance_coef", t.score_balance_coef, 0.0, 1000.0);
  t.augment = r.boolean("augment", t.augment).value_or(t.augment);
  integer("augment_shift", t.augment_shift, 0, 8);
  integer("train_limit", t.train_limit, 0, std::numeric_limits<int>::max());
  integer("test_limit", t.test_limit, 0, std::numeric_limits<int>::max());
  t.seed = static_cast<std::uint64_t>(
    r.integer("seed", 0, std::numeric_limits<std::int64_t>::max(),
              static_cast<std::int64_t>(t.seed))
      .value_or(static_cast<std::int64_t>(t.seed)));
  r.reject_unknown(" in [train]");
}

} // namespace eoe::experts
