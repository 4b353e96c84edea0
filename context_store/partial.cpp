#include "context_store/partial.hpp"

#include <cmath>
#include <stdexcept>

namespace eoe::context {

partial empty_partial(size_t q, Eigen::Index d) {
  partial p;
  p.out = matrix::Zero(static_cast<Eigen::Index>(q), d);
  p.max.assign(q, no_key);
  p.sum.assign(q, 0.0f);
  return p;
}

partial stack_rows(std::span<const partial> rows) {
  partial out;
  Eigen::Index total = 0, d = 0;
  for (auto& r : rows) {
    total += r.out.rows();
    d = std::max(d, r.out.cols());
  }
  out.out.resize(total, d);
  Eigen::Index at = 0;
  for (auto& r : rows) {
    if (r.out.rows() > 0 && r.out.cols() != d)
      throw std::invalid_argument("stack_rows: partials of different widths");
    out.out.middleRows(at, r.out.rows()) = r.out;
    at += r.out.rows();
    out.max.insert(out.max.end(), r.max.begin(), r.max.end());
    out.sum.insert(out.sum.end(), r.sum.begin(), r.sum.end());
  }
  return out;
}

partial merge(std::span<const partial> parts) {
  if (parts.empty())
    throw std::invalid_argument("merge: no partials");
  const size_t q = parts[0].rows();
  const auto d = parts[0].out.cols();
  for (auto& p : parts)
    if (p.rows() != q || p.out.rows() != static_cast<Eigen::Index>(q) || p.out.cols() != d
        || p.sum.size() != q)
      throw std::invalid_argument("merge: partials of different shapes");
  partial out = empty_partial(q, d);
  for (size_t r = 0; r < q; ++r) {
    float m = no_key;
    for (auto& p : parts)
      m = std::max(m, p.max[r]);
    if (m == no_key)
      continue; // no shard sees a key for this row
    // Accumulate in double: the weights span many orders of magnitude across shards.
    double total = 0.0;
    Eigen::VectorXd acc = Eigen::VectorXd::Zero(d);
    for (auto& p : parts) {
      if (p.sum[r] == 0.0f)
        continue;
      const double w = std::exp(static_cast<double>(p.max[r]) - m) * p.sum[r];
      total += w;
      acc += w * p.out.row(static_cast<Eigen::Index>(r)).transpose().cast<double>();
    }
    out.out.row(static_cast<Eigen::Index>(r)) = (acc / total).cast<float>().transpose();
    out.max[r] = m;
    out.sum[r] = static_cast<float>(total);
  }
  return out;
}

} // namespace eoe::context
