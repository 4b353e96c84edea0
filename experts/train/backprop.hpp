#pragma once
// Training math: the model's forward with a tape, the cross-entropy, and the backward pass
// through every part, for the classifier and the language model alike (one network: a stem,
// blocks adding to a residual stream, a head): the embeddings, the expert layers
// (experts/train/expert_layer.hpp: FFN experts, the self-activation path, the router with its
// balance loss and z-loss), affinity weights, recurrent layers (tied weights, gradients summed
// over the steps), RMSNorms and attention (experts/nn/attention.hpp), and the head.
//
// Scalar-generic: float for training, double for the finite-difference gradient checks. The
// forward here matches experts/model/forward.hpp and lm_forward.hpp (tested), but keeps what
// the backward needs.

#include "experts/train/expert_layer.hpp"
#include "experts/model/model.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// The loss of one batch and what the forward decided (a classifier's or a language model's,
/// lm_loss_and_gradient below).
template <class S>
struct step_result {
  S loss = 0;          ///< cross-entropy + auxiliary losses
  S cross_entropy = 0; ///< mean over the predictions
  S auxiliary = 0;     ///< weighted router losses and EoE score balance losses
  long correct = 0;    ///< predictions whose argmax is the label (the next token)
  long predicted = 0;  ///< predictions made: examples (sequences x seq_len)
  basic_matrix<S> logits;             ///< (predicted, classes or vocab)
  std::vector<layer_trace<S>> layers; ///< one per expert layer as run
};

/// Forward, loss and (when grad is given) backward of a batch. x: (B, input_dim or dim),
/// labels: (B) in 0..classes-1; the model must have a head. grad: a model of the same config,
/// overwritten with d loss / d parameter (tau gets no gradient: it is calibrated, not learned).
template <class S>
step_result<S> loss_and_gradient(const basic_model<S>& m, const basic_matrix<S>& x,
                                 std::span<const std::uint8_t> labels, const loss_options& opt,
                                 basic_model<S>* grad,
                                 std::span<const std::uint64_t> token_ids = {});

/// A language model's: windows are `sequences` windows of seq_len + 1 tokens each, one after
/// the other; a window's first seq_len tokens are the input (positions 0..seq_len-1), its last
/// seq_len the targets. grad: as above (selection biases get none either). Throws
/// std::invalid_argument on input that does not fit the model.
template <class S>
step_result<S> lm_loss_and_gradient(const basic_model<S>& m, std::span<const std::uint8_t> windows,
                                    Eigen::Index seq_len, const loss_options& opt,
                                    basic_model<S>* grad);

extern template step_result<float>
lm_loss_and_gradient<float>(const basic_model<float>&, std::span<const std::uint8_t>, Eigen::Index,
                            const loss_options&, basic_model<float>*);
extern template step_result<double>
lm_loss_and_gradient<double>(const basic_model<double>&, std::span<const std::uint8_t>,
                             Eigen::Index, const loss_options&, basic_model<double>*);
extern template step_result<float>
loss_and_gradient<float>(const basic_model<float>&, const basic_matrix<float>&,
                         std::span<const std::uint8_t>, const loss_options&, basic_model<float>*,
                         std::span<const std::uint64_t>);
extern template step_result<double>
loss_and_gradient<double>(const basic_model<double>&, const basic_matrix<double>&,
                          std::span<const std::uint8_t>, const loss_options&,
                          basic_model<double>*, std::span<const std::uint64_t>);

} // namespace eoe::experts
