#pragma once
// Which experts are active on which token, with their gates: the record every layer kind
// (EoE, router, hash, dense) produces.

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// Per token, the active experts (ascending index) and their gate weights, stored row by row
/// (CSR): token t owns entries [offsets[t], offsets[t + 1]). S is the scalar of the gates.
template <class S>
struct basic_activation_set {
  std::vector<std::int32_t> offsets{0}; ///< tokens + 1 entries
  std::vector<std::int32_t> experts;    ///< expert index per entry, ascending within a token
  std::vector<S> gates; ///< gate weight per entry (softmax over the active experts' scores)

  size_t tokens() const noexcept {
    return offsets.size() - 1;
  }

  std::span<const std::int32_t> experts_of(size_t t) const noexcept {
    return {experts.data() + offsets[t], experts.data() + offsets[t + 1]};
  }

  std::span<const S> gates_of(size_t t) const noexcept {
    return {gates.data() + offsets[t], gates.data() + offsets[t + 1]};
  }

  /// Appends the next token's entries.
  void push_token(std::span<const std::int32_t> es, std::span<const S> gs) {
    experts.insert(experts.end(), es.begin(), es.end());
    gates.insert(gates.end(), gs.begin(), gs.end());
    offsets.push_back(static_cast<std::int32_t>(experts.size()));
  }

  /// For expert e, the tokens it is active on (ascending) and its gate on each.
  void tokens_of(std::int32_t e, std::vector<std::int32_t>& rows, std::vector<S>& gs) const {
    rows.clear();
    gs.clear();
    for (size_t t = 0; t < tokens(); ++t)
      for (auto i = offsets[t]; i < offsets[t + 1]; ++i)
        if (experts[i] == e) {
          rows.push_back(static_cast<std::int32_t>(t));
          gs.push_back(gates[i]);
        }
  }

  bool operator==(const basic_activation_set&) const = default;
};

using activation_set = basic_activation_set<float>;

} // namespace eoe::experts
