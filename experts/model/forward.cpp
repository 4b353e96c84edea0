#include "experts/model/forward.hpp"

#include "experts/base/blocks.hpp"
#include "experts/nn/hash_routing.hpp"
#include "experts/nn/rms_norm.hpp"
#include "experts/nn/router.hpp"
#include "experts/nn/self_activation.hpp"
#include "experts/nn/weighted_output.hpp"

#include <numeric>
#include <stdexcept>
#include <string>

namespace eoe::experts {

namespace {

/// Runs every expert on its active rows of its input and weights the outputs by the gates.
/// inputs(e) is expert e's first-projection input for all tokens.
template <class InputOf>
std::vector<weighted_output> run_experts(kernels::backend& be, const layer_params& lp, const layer_config& lc,
                          const activation_set& active, InputOf&& input_of) {
  std::vector<weighted_output> out(lp.experts.size());
  std::vector<float> gates;
  matrix in, hidden;
  for (size_t e = 0; e < lp.experts.size(); ++e) {
    auto& c = out[e];
    active.tokens_of(static_cast<std::int32_t>(e), c.rows, gates);
    if (c.rows.empty())
      continue;
    gather_rows(input_of(e), c.rows, in);
    expert_forward(be, lp.experts[e], lc.act, in, hidden, c.values);
    for (size_t r = 0; r < gates.size(); ++r)
      c.values.row(static_cast<Eigen::Index>(r)) *= gates[r];
  }
  return out;
}

} // namespace

void expert_layer(kernels::backend& be, const layer_params& lp, const layer_config& lc,
                  std::span<const matrix* const> inputs, std::span<const std::uint64_t> token_ids,
                  std::uint64_t seed, std::vector<weighted_output>& out, layer_record& rec) {
  const bool per_expert = inputs.size() > 1;
  if (inputs.empty() || (per_expert && inputs.size() != lp.experts.size()))
    throw std::invalid_argument("expert_layer: one input, or one per expert");
  const matrix& shared = *inputs[0];
  const auto tokens = shared.rows();
  rec.kind = lc.kind;
  switch (lc.kind) {
    case layer_kind::eoe: {
      // Each expert scores its own input; with affinity every expert mixes its own. The rest
      // of expert e reads u[e] = x A when factored, else its input itself.
      std::vector<matrix> u(static_cast<size_t>(lc.experts));
      rec.scores.resize(tokens, lc.experts);
      vector s;
      for (int e = 0; e < lc.experts; ++e) {
        expert_scores(be, lp.experts[e], lc.score_columns, per_expert ? *inputs[e] : shared,
                      u[e], s);
        rec.scores.col(e) = s;
      }
      const std::span<const float> gate_bias{lp.gate_bias.data(),
                                             static_cast<size_t>(lp.gate_bias.size())};
      rec.active = lc.mode == activation_mode::topk
                     ? select_topk<float>(rec.scores, lc.k,
                                          {lp.select_bias.data(),
                                           static_cast<size_t>(lp.select_bias.size())},
                                          gate_bias)
                     : select_threshold<float>(
                         rec.scores, {lp.tau.data(), static_cast<size_t>(lp.tau.size())},
                         gate_bias);
      out = run_experts(be, lp, lc, rec.active, [&](size_t e) -> const matrix& {
        return lc.rank > 0 ? u[e] : per_expert ? *inputs[e] : shared;
      });
      break;
    }
    case layer_kind::router: {
      matrix logits;
      be.gemm(shared, lp.router, logits);
      auto d = route_topk(logits, lc.k);
      rec.scores = std::move(d.probs);
      rec.active = std::move(d.active);
      rec.balance_loss = d.balance_loss;
      rec.z_loss = d.z_loss;
      out = run_experts(be, lp, lc, rec.active, [&](size_t) -> const matrix& { return shared; });
      break;
    }
    case layer_kind::hash: {
      rec.active = route_hash(token_ids, lc.experts, lc.k, seed);
      out = run_experts(be, lp, lc, rec.active, [&](size_t) -> const matrix& { return shared; });
      break;
    }
    case layer_kind::dense: {
      const std::int32_t only[] = {0};
      const float one[] = {1.0f};
      for (Eigen::Index t = 0; t < tokens; ++t)
        rec.active.push_token(only, one);
      out = run_experts(be, lp, lc, rec.active, [&](size_t) -> const matrix& { return shared; });
      break;
    }
    case layer_kind::attention:
      throw std::logic_error("expert_layer: an attention layer has no experts");
  }
}

expected<forward_result> forward(kernels::backend& be, const model& m, const matrix& x,
                                 std::span<const std::uint64_t> token_ids) {
  const auto& c = m.config;
  const auto tokens = x.rows();
  const int in_dim = c.input_dim > 0 ? c.input_dim : c.dim;
  if (c.is_lm())
    return fail(errc::data_invalid, "forward: '" + c.name
                                      + "' is a language model: it reads byte sequences "
                                        "(experts/model/lm_forward.hpp)");
  if (x.cols() != in_dim)
    return fail(errc::data_invalid, "forward: the input has " + std::to_string(x.cols())
                                      + " columns, the model '" + c.name + "' expects "
                                      + std::to_string(in_dim));
  if (!token_ids.empty() && static_cast<Eigen::Index>(token_ids.size()) != tokens)
    return fail(errc::data_invalid, "forward: " + std::to_string(token_ids.size())
                                      + " token ids for " + std::to_string(tokens) + " tokens");
  std::vector<std::uint64_t> row_ids;
  if (token_ids.empty()) {
    row_ids.resize(tokens);
    std::iota(row_ids.begin(), row_ids.end(), 0);
    token_ids = row_ids;
  }

  forward_result res;
  matrix h; // h_{l-1}: the residual stream before the previous layer's contributions
  if (c.input_dim > 0) {
    be.gemm(x, m.embed_w, h);
    be.add_bias(h, m.embed_b);
  } else {
    h = x;
  }

  std::vector<weighted_output> pending; // the previous layer's g_i y_i
  std::vector<matrix> mixed;
  std::vector<const matrix*> inputs;
  for (const auto& b : blocks_of(c)) { // a classifier's blocks are all expert layers
    const auto& lc = c.layers[b.layer];
    const auto& lp = m.layers[b.layer];
    matrix h_next = h; // h_l = h_{l-1} + sum_i g_i y_i
    scatter_add(h_next, pending);
    inputs.assign(1, &h_next);
    if (lc.affinity) {
      mixed.resize(static_cast<size_t>(lc.experts));
      inputs.clear();
      for (int e = 0; e < lc.experts; ++e) {
        mixed[e] = h;
        scatter_add(mixed[e], pending, lp.affinity.data() + e, lp.affinity.cols());
        inputs.push_back(&mixed[e]);
      }
    }
    layer_record rec;
    std::vector<weighted_output> out;
    expert_layer(be, lp, lc, inputs, token_ids, hash_seed(c, b.unrolled), out, rec);
    pending = std::move(out);
    h = std::move(h_next);
    res.layers.push_back(std::move(rec));
  }
  scatter_add(h, pending); // h_L

  res.output = model_head(be, m, std::move(h));
  return res;
}

matrix model_head(kernels::backend& be, const model& m, matrix h) {
  matrix out;
  if (m.config.is_lm()) {
    matrix normed;
    std::vector<float> inv_rms;
    rms_norm_forward(h, m.final_norm, normed, inv_rms);
    be.gemm(normed, m.head_w, out);
  } else if (m.config.classes > 0) {
    be.gemm(h, m.head_w, out);
  } else {
    return h;
  }
  be.add_bias(out, m.head_b);
  return out;
}

} // namespace eoe::experts
