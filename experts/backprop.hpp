#pragma once
// Training math of a classifier: the model's forward with a tape, the loss, and the backward
// pass through every part: embedding, the expert layers (experts/expert_layer.hpp: FFN
// experts, the self-activation path, the router with its balance loss and z-loss), affinity
// weights, recurrent layers (tied weights, gradients summed over the steps) and the head.
//
// Scalar-generic: float for training, double for the finite-difference gradient checks. The
// forward here matches experts/forward.hpp (tested), but keeps what the backward needs.

#include "experts/expert_layer.hpp"
#include "experts/model.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// The loss of one batch and what the forward decided.
template <class S>
struct step_result {
  S loss = 0;          ///< cross-entropy + auxiliary losses
  S cross_entropy = 0; ///< mean over the batch
  S auxiliary = 0;     ///< weighted router losses and EoE score balance losses
  int correct = 0;     ///< examples whose argmax equals the label
  basic_matrix<S> logits;
  std::vector<layer_trace<S>> layers;
};

/// Forward, loss and (when grad is given) backward of a batch. x: (B, input_dim or dim),
/// labels: (B) in 0..classes-1; the model must have a head. grad: a model of the same config,
/// overwritten with d loss / d parameter (tau gets no gradient: it is calibrated, not learned).
template <class S>
step_result<S> loss_and_gradient(const basic_model<S>& m, const basic_matrix<S>& x,
                                 std::span<const std::uint8_t> labels, const loss_options& opt,
                                 basic_model<S>* grad,
                                 std::span<const std::uint64_t> token_ids = {});

extern template step_result<float>
loss_and_gradient<float>(const basic_model<float>&, const basic_matrix<float>&,
                         std::span<const std::uint8_t>, const loss_options&, basic_model<float>*,
                         std::span<const std::uint64_t>);
extern template step_result<double>
loss_and_gradient<double>(const basic_model<double>&, const basic_matrix<double>&,
                          std::span<const std::uint8_t>, const loss_options&,
                          basic_model<double>*, std::span<const std::uint64_t>);

} // namespace eoe::experts
