#include "experts/train/evaluate.hpp"

#include "experts/model/forward.hpp"

#include <cmath>
#include <numeric>

namespace eoe::experts {

expected<eval_result> evaluate(kernels::backend& be, const model& m, const labelled_images& data,
                               int batch) {
  const auto& c = m.config;
  if (c.is_lm())
    return fail(errc::data_invalid, "evaluate: '" + c.name
                                      + "' is a language model: it is evaluated on text (evaluate_lm)");
  if (c.classes <= 0)
    return fail(errc::data_invalid, "evaluate: model '" + c.name + "' has no head (classes = 0)");
  eval_result r;
  stats_accumulator stats{c, c.classes};
  const auto n = data.images.rows();
  double loss = 0;
  size_t correct = 0;
  for (Eigen::Index begin = 0; begin < n; begin += batch) {
    const auto rows = std::min<Eigen::Index>(batch, n - begin);
    matrix x = data.images.middleRows(begin, rows);
    std::vector<std::uint64_t> ids(static_cast<size_t>(rows)); // example indices, for hash layers
    std::iota(ids.begin(), ids.end(), static_cast<std::uint64_t>(begin));
    auto out = forward(be, m, x, ids);
    if (!out)
      return eoe::unexpected(out.error());
    std::span<const std::uint8_t> labels{data.labels.data() + begin, static_cast<size_t>(rows)};
    for (Eigen::Index t = 0; t < rows; ++t) {
      if (labels[t] >= c.classes)
        return fail(errc::data_invalid, "evaluate: label " + std::to_string(labels[t])
                                          + " of example " + std::to_string(begin + t)
                                          + " is not below classes = "
                                          + std::to_string(c.classes));
      const auto row = out->output.row(t);
      const double mx = row.maxCoeff();
      double sum = 0;
      for (Eigen::Index k = 0; k < row.size(); ++k)
        sum += std::exp(double(row(k)) - mx);
      loss += mx + std::log(sum) - row(labels[t]);
      Eigen::Index best = 0;
      row.maxCoeff(&best);
      correct += best == labels[t];
    }
    std::vector<const activation_set*> sets;
    for (auto& l : out->layers)
      sets.push_back(&l.active);
    stats.add<float>(sets, labels);
  }
  r.examples = static_cast<size_t>(n);
  r.loss = n > 0 ? loss / static_cast<double>(n) : 0;
  r.accuracy = n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0;
  r.layers = stats.finish();
  r.expert_flops = stats_accumulator::total_expert_flops(r.layers);
  return r;
}

} // namespace eoe::experts
