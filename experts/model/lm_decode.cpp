#include "experts/model/lm_decode.hpp"

#include "experts/model/lm_forward.hpp"

#include <cmath>
#include <stdexcept>

namespace eoe::experts {

matrix decode_step(const model& m, kernels::backend& be, const kv_layout& layout,
                   std::span<const step_feed> feeds, std::vector<layer_record>* records) {
  const auto& c = m.config;
  if (!c.is_lm())
    throw std::invalid_argument("decode_step: '" + c.name + "' is not a language model");
  std::vector<Eigen::Index> first{0}; // each feed's first row
  for (const auto& f : feeds) {
    if (f.tokens.empty())
      throw std::invalid_argument("decode_step: a sequence with no tokens to feed");
    first.push_back(first.back() + static_cast<Eigen::Index>(f.tokens.size()));
  }
  const auto n = first.back();
  std::vector<std::uint64_t> ids(static_cast<size_t>(n));
  matrix h(n, c.dim);
  for (size_t i = 0; i < feeds.size(); ++i)
    for (size_t t = 0; t < feeds[i].tokens.size(); ++t) {
      const auto token = feeds[i].tokens[t];
      if (token >= c.vocab)
        throw std::invalid_argument("decode_step: token " + std::to_string(token)
                                    + " is not below vocab = " + std::to_string(c.vocab));
      const auto r = first[i] + static_cast<Eigen::Index>(t);
      ids[static_cast<size_t>(r)] = token;
      h.row(r) = m.embed_w.row(token);
    }
  for (const auto& f : feeds)
    f.sequence->kv.resize(c.layers.size());
  auto logits = lm_layers_and_head(
    be, m, h, ids,
    [&](size_t l, const matrix& normed, matrix& stream) {
      for (size_t i = 0; i < feeds.size(); ++i) {
        const auto rows = first[i + 1] - first[i];
        auto& seq = *feeds[i].sequence;
        stream.middleRows(first[i], rows) += attention_decode(
          m.layers[l].attention, c.layers[l], normed.middleRows(first[i], rows), seq.position,
          seq.kv[l], layout);
      }
    },
    records);
  for (const auto& f : feeds)
    f.sequence->position += static_cast<std::int64_t>(f.tokens.size());
  return logits;
}

lm_decoder::lm_decoder(const model& m, kv_layout layout)
  : m_(&m), be_(kernels::make_cpu_backend()), layout_(layout) {
  if (!m.config.is_lm())
    throw std::invalid_argument("lm_decoder: '" + m.config.name + "' is not a language model");
  seq_.kv.resize(m.config.layers.size());
}

void lm_decoder::restart() {
  seq_ = lm_sequence{};
  seq_.kv.resize(m_->config.layers.size());
  last_.clear();
}

matrix lm_decoder::feed(std::span<const std::uint8_t> tokens) {
  if (tokens.empty())
    throw std::invalid_argument("lm_decoder: no tokens to feed");
  for (const auto t : tokens)
    if (t >= m_->config.vocab)
      throw std::invalid_argument("lm_decoder: token " + std::to_string(t)
                                  + " is not below vocab = " + std::to_string(m_->config.vocab));
  last_.clear();
  const step_feed f{&seq_, tokens};
  return decode_step(*m_, *be_, layout_, {&f, 1}, &last_);
}

std::string generate(const model& m, std::string_view prompt, const sampling& s,
                     kv_layout layout) {
  lm_decoder d{m, layout};
  return generate(d, m.config.context, prompt, s);
}

} // namespace eoe::experts
