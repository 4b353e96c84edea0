#include "experts/lm_decode.hpp"

#include "experts/rms_norm.hpp"
#include "experts/weighted_output.hpp"

#include <cmath>
#include <stdexcept>

namespace eoe::experts {

lm_decoder::lm_decoder(const model& m, kv_layout layout)
  : m_(&m), be_(kernels::make_cpu_backend()), layout_(layout), kv_(m.config.layers.size()) {
  if (!m.config.is_lm())
    throw std::invalid_argument("lm_decoder: '" + m.config.name + "' is not a language model");
}

void lm_decoder::restart() {
  kv_.assign(m_->config.layers.size(), {});
  last_.clear();
  position_ = 0;
}

matrix lm_decoder::feed(std::span<const std::uint8_t> tokens) {
  const auto& c = m_->config;
  if (tokens.empty())
    throw std::invalid_argument("lm_decoder: no tokens to feed");
  const auto n = static_cast<Eigen::Index>(tokens.size());
  std::vector<std::uint64_t> ids(tokens.size());
  matrix h(n, c.dim);
  for (Eigen::Index r = 0; r < n; ++r) {
    const auto t = tokens[static_cast<size_t>(r)];
    if (t >= c.vocab)
      throw std::invalid_argument("lm_decoder: token " + std::to_string(t)
                                  + " is not below vocab = " + std::to_string(c.vocab));
    ids[static_cast<size_t>(r)] = t;
    h.row(r) = m_->embed_w.row(t);
  }
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
      expert_layer(*be_, lp, lc, in, ids, hash_seed(c, last_.size()), out, rec);
      scatter_add(h, out);
      last_.push_back(std::move(rec));
    }
  }
  position_ += n;
  rms_norm_forward(h, m_->final_norm, normed, inv_rms);
  matrix logits;
  be_->gemm(normed, m_->head_w, logits);
  be_->add_bias(logits, m_->head_b);
  return logits;
}

std::string generate(const model& m, std::string_view prompt, const sampling& s,
                     kv_layout layout) {
  lm_decoder d{m, layout};
  return generate(d, m.config.context, prompt, s);
}

} // namespace eoe::experts
