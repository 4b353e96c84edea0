#include "experts/lm_decode.hpp"

#include "experts/rms_norm.hpp"
#include "experts/rng.hpp"
#include "experts/weighted_output.hpp"

#include <cmath>
#include <optional>
#include <stdexcept>

namespace eoe::experts {

lm_decoder::lm_decoder(const model& m, kv_layout layout)
  : m_(&m), be_(kernels::make_cpu_backend()), layout_(layout), kv_(m.config.layers.size()) {
  if (!m.config.is_lm())
    throw std::invalid_argument("lm_decoder: '" + m.config.name + "' is not a language model");
}

matrix lm_decoder::step(std::uint8_t token) {
  const auto& c = m_->config;
  if (token >= c.vocab)
    throw std::invalid_argument("lm_decoder: token " + std::to_string(token)
                                + " is not below vocab = " + std::to_string(c.vocab));
  const std::uint64_t id[] = {token};
  matrix h = m_->embed_w.row(token);
  matrix normed;
  std::vector<float> inv_rms;
  last_.clear();
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const auto& lc = c.layers[l];
    const auto& lp = m_->layers[l];
    for (int step = 0; step < lc.steps; ++step) {
      rms_norm_forward(h, lp.norm, normed, inv_rms);
      if (lc.kind == layer_kind::attention) {
        h += attention_decode(lp.attention, lc, normed, position_, kv_[l], layout_);
        continue;
      }
      const matrix* in[] = {&normed};
      std::vector<weighted_output> out;
      layer_record rec;
      expert_layer(*be_, lp, lc, in, id, hash_seed(c, last_.size()), out, rec);
      scatter_add(h, out);
      last_.push_back(std::move(rec));
    }
  }
  ++position_;
  rms_norm_forward(h, m_->final_norm, normed, inv_rms);
  matrix logits;
  be_->gemm(normed, m_->head_w, logits);
  be_->add_bias(logits, m_->head_b);
  return logits;
}

std::string generate(const model& m, std::string_view prompt, const sampling& s,
                     kv_layout layout) {
  if (prompt.empty())
    throw std::invalid_argument("generate: the prompt needs at least one token");
  const auto context = static_cast<size_t>(m.config.context);
  std::string text{prompt}; // the prompt and what follows it
  std::optional<lm_decoder> dec;
  matrix logits;
  // A fresh decoder over the last `keep` bytes: positions past the context were never trained.
  auto restart = [&](size_t keep) {
    dec.emplace(m, layout);
    for (size_t i = text.size() - std::min(keep, text.size()); i < text.size(); ++i)
      logits = dec->step(static_cast<std::uint8_t>(text[i]));
  };
  restart(context);
  rng r{s.seed};
  for (int i = 0; i < s.tokens; ++i) {
    Eigen::Index next = 0;
    if (s.temperature <= 0) {
      logits.row(0).maxCoeff(&next);
    } else {
      // Sample from softmax(logits / temperature) by its cumulative sum.
      const double mx = logits.maxCoeff();
      std::vector<double> p(static_cast<size_t>(logits.cols()));
      double sum = 0;
      for (size_t k = 0; k < p.size(); ++k)
        sum += p[k] = std::exp((logits(0, static_cast<Eigen::Index>(k)) - mx) / s.temperature);
      double u = r.uniform() * sum;
      next = static_cast<Eigen::Index>(p.size() - 1);
      for (size_t k = 0; k < p.size(); ++k)
        if ((u -= p[k]) < 0) {
          next = static_cast<Eigen::Index>(k);
          break;
        }
    }
    text.push_back(static_cast<char>(next));
    if (i + 1 == s.tokens)
      break;
    if (static_cast<size_t>(dec->position()) == context)
      restart(context / 2);
    else
      logits = dec->step(static_cast<std::uint8_t>(next));
  }
  return text.substr(prompt.size());
}

} // namespace eoe::experts
