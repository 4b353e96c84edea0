#pragma once
// Changing the experts of a model: adding one (zero-initialised, a clone, or weights from
// elsewhere) and removing one, with every layer-level tensor kept consistent (affinities in
// and out, thresholds, selection and gate biases). The actor mesh's membership epochs are
// models made with these.
//
// Function preservation: a zero expert (A = 0, W2 = 0) scores 0, is never selected and adds
// nothing, so outputs stay bit-identical; a clone in a threshold layer fires where the
// original fires, and both take the original's gate bias - ln 2, so that every gate sum and
// every output stays the same up to rounding.

#include "experts/model/model.hpp"

#include <cstdint>

namespace eoe::experts {

/// A new expert's entries in its layer's tensors.
struct expert_entries {
  float tau = 0.0f;         ///< threshold layers
  float select_bias = 0.0f; ///< top-k layers
  float gate_bias = 0.0f;
  std::vector<float> affinity_in;  ///< (E_prev) its column of this layer's affinity; empty: 1s
  std::vector<float> affinity_out; ///< (E_next) its row of the next layer's affinity; empty: 1s
};

/// An expert of layer l of m that changes nothing until trained: A = 0 (it scores 0; not
/// factored: W1's scoring columns 0), W2 = 0 and zero biases (it outputs 0); W1 (the rest of
/// it) drawn from `seed` so that training can move it.
ffn_expert zero_expert(const model& m, size_t layer, std::uint64_t seed);

/// m with expert e appended to eoe layer `layer` (it takes the last position).
expected<model> with_expert(const model& m, size_t layer, const ffn_expert& e,
                            const expert_entries& x);

/// m with the expert at `position` of eoe threshold layer `layer` split in two (the copy takes
/// the last position); both carry the original's gate bias - ln 2.
expected<model> with_clone(const model& m, size_t layer, size_t position);

/// m without the expert at `position` of layer `layer` (eoe, router or hash; a router or hash
/// layer then routes over the experts left, which changes its choices: for lost nodes).
expected<model> without_expert(const model& m, size_t layer, size_t position);

} // namespace eoe::experts
