#include "experts/model/lm_forward.hpp"

#include "experts/base/blocks.hpp"
#include "experts/nn/attention.hpp"
#include "experts/nn/rms_norm.hpp"
#include "experts/nn/weighted_output.hpp"

#include <string>

namespace eoe::experts {

expected<void> check_lm_input(const model_config& c, std::span<const std::uint8_t> tokens,
                              Eigen::Index seq_len) {
  const auto n = static_cast<Eigen::Index>(tokens.size());
  if (!c.is_lm())
    return fail(errc::data_invalid, "'" + c.name + "' is not a language model ([model] kind)");
  if (seq_len < 1 || n % seq_len != 0)
    return fail(errc::data_invalid, std::to_string(n) + " tokens are not whole sequences of "
                                      + std::to_string(seq_len));
  if (seq_len > c.context)
    return fail(errc::data_invalid, "sequences of " + std::to_string(seq_len)
                                      + " tokens are longer than the context of '" + c.name
                                      + "' (" + std::to_string(c.context) + ")");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= c.vocab)
      return fail(errc::data_invalid, "token " + std::to_string(tokens[i]) + " at " + std::to_string(i)
                                        + " is not below vocab = " + std::to_string(c.vocab));
  return {};
}

matrix lm_layers_and_head(kernels::backend& be, const model& m, matrix& h,
                          std::span<const std::uint64_t> ids, const attend_fn& attend,
                          std::vector<layer_record>* records) {
  const auto& c = m.config;
  matrix normed;
  std::vector<float> inv_rms;
  for (const auto& b : blocks_of(c)) {
    const auto& lc = c.layers[b.layer];
    const auto& lp = m.layers[b.layer];
    rms_norm_forward(h, lp.norm, normed, inv_rms);
    if (b.attention) {
      attend(b.layer, normed, h);
      continue;
    }
    const matrix* in[] = {&normed};
    std::vector<weighted_output> out;
    layer_record rec;
    expert_layer(be, lp, lc, in, ids, hash_seed(c, b.unrolled), out, rec);
    scatter_add(h, out);
    if (records)
      records->push_back(std::move(rec));
  }
  return model_head(be, m, h);
}

expected<lm_forward_result> lm_forward(kernels::backend& be, const model& m,
                                       std::span<const std::uint8_t> tokens,
                                       Eigen::Index seq_len) {
  const auto& c = m.config;
  const auto n = static_cast<Eigen::Index>(tokens.size());
  if (seq_len == 0)
    seq_len = n;
  if (auto ok = check_lm_input(c, tokens, seq_len); !ok)
    return fail(errc::data_invalid, "lm_forward: " + ok.error().message);
  const std::vector<std::uint64_t> ids(tokens.begin(), tokens.end()); // what hash layers hash
  matrix h(n, c.dim);
  for (Eigen::Index r = 0; r < n; ++r)
    h.row(r) = m.embed_w.row(tokens[r]);
  lm_forward_result res;
  matrix y;
  res.logits = lm_layers_and_head(
    be, m, h, ids,
    [&](size_t l, const matrix& normed, matrix& stream) {
      attention_forward<float>(m.layers[l].attention, c.layers[l], normed, seq_len, y);
      stream += y;
    },
    &res.layers);
  return res;
}

} // namespace eoe::experts
