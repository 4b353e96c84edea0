#include "experts/train/adamw.hpp"

#include "experts/base/parallel.hpp"

#include <cmath>
#include <vector>

namespace eoe::experts {

bool decays(const std::string& name) noexcept {
  return name.ends_with(".w") || name.ends_with(".w1") || name.ends_with(".w2")
         || name.ends_with(".a") || name.ends_with(".router") || name.ends_with(".wq")
         || name.ends_with(".wk") || name.ends_with(".wv") || name.ends_with(".wo");
}

bool learned(const std::string& name) noexcept {
  return !name.ends_with(".tau") && !name.ends_with(".select_bias");
}

double learning_rate(const train_config& t, long step, long total_steps) noexcept {
  const double warm = std::max(1.0, t.warmup_fraction * static_cast<double>(total_steps));
  if (static_cast<double>(step) < warm)
    return t.lr * (static_cast<double>(step) + 1.0) / warm;
  const double span = std::max(1.0, static_cast<double>(total_steps) - warm);
  const double progress = std::min(1.0, (static_cast<double>(step) - warm) / span);
  const double floor = t.lr * t.final_lr_fraction;
  return floor + (t.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double clip_scale(double norm, double max_norm) noexcept {
  return max_norm > 0 && norm > max_norm ? max_norm / norm : 1.0;
}

adamw::adamw(const model_config& c, const train_config& t)
  : cfg_(t), first_(zero_model(c)), second_(zero_model(c)) {
  // nop
}

void adamw::step(model& m, const model& g, double lr, double grad_scale) {
  ++t_;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2;
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(b1, static_cast<double>(t_))));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(b2, static_cast<double>(t_))));
  struct slot {
    const std::string* name;
    matrix* w;
    const matrix* g;
    matrix* mean;
    matrix* sq;
  };
  std::vector<slot> slots;
  std::vector<std::string> names;
  for_each_parameter(m, [&](const std::string& name, matrix& w) {
    names.push_back(name);
    slots.push_back({nullptr, &w, nullptr, nullptr, nullptr});
  });
  size_t i = 0;
  for_each_parameter(g, [&](const std::string&, const matrix& x) { slots[i++].g = &x; });
  i = 0;
  for_each_parameter(first_, [&](const std::string&, matrix& x) { slots[i++].mean = &x; });
  i = 0;
  for_each_parameter(second_, [&](const std::string&, matrix& x) { slots[i++].sq = &x; });
  const auto gs = static_cast<float>(grad_scale);
  parallel_for(slots.size(), [&](size_t k) {
    auto& s = slots[k];
    if (!learned(names[k]))
      return;
    auto mean = s.mean->array();
    auto sq = s.sq->array();
    const auto gr = s.g->array() * gs;
    mean = static_cast<float>(b1) * mean + static_cast<float>(1 - b1) * gr;
    sq = static_cast<float>(b2) * sq + static_cast<float>(1 - b2) * gr.square();
    if (decays(names[k]))
      s.w->array() *= static_cast<float>(1.0 - lr * cfg_.weight_decay);
    s.w->array() -= static_cast<float>(lr)
                    * ((mean * c1) / ((sq * c2).sqrt() + static_cast<float>(cfg_.eps)));
  });
}

} // namespace eoe::experts
