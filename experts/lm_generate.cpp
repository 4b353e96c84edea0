#include "experts/lm_generate.hpp"

#include "experts/rng.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace eoe::experts {

matrix compared_decoder::feed(std::span<const std::uint8_t> tokens) {
  matrix got = used_.feed(tokens);
  const matrix want = reference_.feed(tokens);
  if (got.rows() != want.rows() || got.cols() != want.cols())
    throw std::logic_error("compared_decoder: (" + std::to_string(got.rows()) + ", "
                           + std::to_string(got.cols()) + ") logits against ("
                           + std::to_string(want.rows()) + ", " + std::to_string(want.cols())
                           + ")");
  worst_ = std::max(worst_, (got - want).cwiseAbs().maxCoeff());
  rows_ += static_cast<size_t>(got.rows());
  return got;
}

void compared_decoder::restart() {
  used_.restart();
  reference_.restart();
  ++restarts_;
}

std::int64_t compared_decoder::position() const {
  const auto p = used_.position();
  if (p != reference_.position())
    throw std::logic_error("compared_decoder: positions " + std::to_string(p) + " and "
                           + std::to_string(reference_.position()));
  return p;
}

int sample_token(const matrix& logits, const sampling& s, rng& r) {
  if (logits.rows() < 1 || logits.cols() < 1)
    throw std::invalid_argument("sample_token: no logits");
  Eigen::Index best = 0;
  logits.row(0).maxCoeff(&best);
  if (s.temperature <= 0)
    return static_cast<int>(best);
  const auto n = static_cast<size_t>(logits.cols());
  const double mx = logits(0, best);
  std::vector<double> p(n);
  for (size_t k = 0; k < n; ++k)
    p[k] = std::exp((logits(0, static_cast<Eigen::Index>(k)) - mx) / s.temperature);
  // The nucleus: tokens by falling probability (stable: ties keep the lower token first)
  // until their share reaches top_p.
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = n;
  if (s.top_p < 1) {
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    double run = 0;
    for (keep = 0; keep < n;)
      if ((run += p[order[keep++]]) >= s.top_p * total)
        break;
    std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep));
  }
  double sum = 0;
  for (size_t i = 0; i < keep; ++i)
    sum += p[order[i]];
  double u = r.uniform() * sum;
  for (size_t i = 0; i < keep; ++i)
    if ((u -= p[order[i]]) < 0)
      return order[i];
  return order[keep - 1];
}

std::string generate(sequence_decoder& d, std::int64_t context, std::string_view prompt,
                     const sampling& s, const std::function<void(char)>& on_token) {
  if (prompt.empty())
    throw std::invalid_argument("generate: the prompt needs at least one token");
  if (context < 2)
    throw std::invalid_argument("generate: the context must hold at least 2 positions");
  std::string text{prompt}; // the prompt and what follows it
  // The last `keep` bytes of the text from position 0: positions past the context were never
  // trained.
  auto restart = [&](size_t keep) {
    d.restart();
    keep = std::min(keep, text.size());
    const auto* first = reinterpret_cast<const std::uint8_t*>(text.data() + text.size() - keep);
    const matrix all = d.feed({first, keep});
    return matrix{all.bottomRows(1)};
  };
  matrix logits = restart(static_cast<size_t>(context));
  rng r{s.seed};
  for (int i = 0; i < s.tokens; ++i) {
    const auto next = static_cast<std::uint8_t>(sample_token(logits, s, r));
    text.push_back(static_cast<char>(next));
    if (on_token)
      on_token(static_cast<char>(next));
    if (i + 1 == s.tokens)
      break;
    if (d.position() >= context)
      logits = restart(static_cast<size_t>(context / 2));
    else
      logits = d.feed({&next, 1});
  }
  return text.substr(prompt.size());
}

} // namespace eoe::experts
