#include "experts/model/lm_generate.hpp"

#include "experts/base/rng.hpp"

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

generation::generation(std::int64_t context, std::string_view prompt, const sampling& s)
  : context_(context), s_(s), rng_(s.seed), text_(prompt), tokens_(std::max(s.tokens, 0)) {
  if (prompt.empty())
    throw std::invalid_argument("generate: the prompt needs at least one token");
  if (context < 2)
    throw std::invalid_argument("generate: the context must hold at least 2 positions");
  // Positions past the context were never trained: the prompt's last `context` bytes.
  prompt_fed_ = std::min(prompt.size(), static_cast<size_t>(context));
  next_ = {true, text_.substr(text_.size() - prompt_fed_)};
  position_ = static_cast<std::int64_t>(prompt_fed_);
}

std::uint8_t generation::take(const matrix& logits) {
  if (done())
    throw std::logic_error("generation: every token was sampled");
  if (logits.rows() < 1)
    throw std::invalid_argument("generation: no logits");
  const auto token = static_cast<std::uint8_t>(sample_token(logits.bottomRows(1), s_, rng_));
  text_.push_back(static_cast<char>(token));
  ++generated_;
  if (position_ >= context_) { // the last context / 2 bytes again, from position 0
    const auto keep = std::min(text_.size(), static_cast<size_t>(context_ / 2));
    next_ = {true, text_.substr(text_.size() - keep)};
    position_ = static_cast<std::int64_t>(keep);
  } else {
    next_ = {false, std::string(1, static_cast<char>(token))};
    ++position_;
  }
  return token;
}

std::string generate(sequence_decoder& d, std::int64_t context, std::string_view prompt,
                     const sampling& s, const std::function<void(char)>& on_token) {
  generation g{context, prompt, s};
  std::string out;
  while (!g.done()) {
    const auto& step = g.next();
    if (step.restart)
      d.restart();
    const matrix logits = d.feed({reinterpret_cast<const std::uint8_t*>(step.tokens.data()),
                                  step.tokens.size()});
    const auto next = static_cast<char>(g.take(logits));
    out.push_back(next);
    if (on_token)
      on_token(next);
  }
  return out;
}

} // namespace eoe::experts
