#include "experts/nn/weighted_output.hpp"

#include "experts/nn/self_activation.hpp"

#include <stdexcept>

namespace eoe::experts {

void token_gates(const layer_config& sending, std::span<const float> carried,
                 std::span<float> gates) {
  switch (sending.kind) {
    case layer_kind::eoe:
      softmax_gates<float>(carried, gates);
      return;
    case layer_kind::router: {
      float picked = 0.0f;
      for (size_t i = 0; i < carried.size(); ++i) {
        gates[i] = carried[i];
        picked += carried[i];
      }
      if (sending.k > 1)
        for (auto& g : gates)
          g /= picked;
      return;
    }
    case layer_kind::hash:
      for (auto& g : gates)
        g = 1.0f / static_cast<float>(sending.k);
      return;
    case layer_kind::dense:
      for (auto& g : gates)
        g = 1.0f;
      return;
    case layer_kind::attention:
      throw std::logic_error("token_gates: an attention layer sends no expert outputs");
  }
}

std::vector<weighted_output> gate_outputs(const layer_config& sending,
                                          std::span<const sender_output> senders,
                                          size_t tokens) {
  // Per token, the active senders in index order and what they carry.
  std::vector<std::vector<std::pair<size_t, size_t>>> at(tokens); // (sender, row in sender)
  for (size_t i = 0; i < senders.size(); ++i)
    for (size_t r = 0; r < senders[i].rows.size(); ++r) {
      const auto t = senders[i].rows[r];
      if (t < 0 || static_cast<size_t>(t) >= tokens)
        throw std::out_of_range("gate_outputs: a sender's row is outside the request's tokens");
      at[static_cast<size_t>(t)].emplace_back(i, r);
    }
  std::vector<std::vector<float>> gate(senders.size());
  for (size_t i = 0; i < senders.size(); ++i)
    gate[i].resize(senders[i].rows.size());
  std::vector<float> carried, g;
  for (size_t t = 0; t < tokens; ++t) {
    carried.clear();
    for (auto [i, r] : at[t])
      carried.push_back(senders[i].carried[r]);
    g.resize(carried.size());
    token_gates(sending, carried, g);
    for (size_t a = 0; a < at[t].size(); ++a)
      gate[at[t][a].first][at[t][a].second] = g[a];
  }
  std::vector<weighted_output> out(senders.size());
  for (size_t i = 0; i < senders.size(); ++i) {
    out[i].rows.assign(senders[i].rows.begin(), senders[i].rows.end());
    if (out[i].rows.empty())
      continue;
    out[i].values = *senders[i].y;
    for (size_t r = 0; r < gate[i].size(); ++r)
      out[i].values.row(static_cast<Eigen::Index>(r)) *= gate[i][r];
  }
  return out;
}

} // namespace eoe::experts
