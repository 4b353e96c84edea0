#pragma once
// Training math of a language model: the forward of experts/lm_forward.hpp with a tape, the
// next-token cross-entropy over every position of every sequence, and the backward through
// the head, the RMSNorms, attention (experts/attention.hpp), the expert layers
// (experts/expert_layer.hpp) and the token embedding.
//
// Scalar-generic: float for training, double for the finite-difference checks.

#include "experts/expert_layer.hpp"
#include "experts/model.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace eoe::experts {

/// The loss of one batch of sequences and what the forward decided.
template <class S>
struct lm_step_result {
  S loss = 0;          ///< cross-entropy + auxiliary losses
  S cross_entropy = 0; ///< mean over every predicted token, in nats
  S auxiliary = 0;     ///< weighted router losses and EoE score balance losses
  long correct = 0;    ///< predictions whose argmax is the next token
  long predicted = 0;  ///< tokens predicted: sequences x seq_len
  basic_matrix<S> logits;             ///< (sequences x seq_len, vocab)
  std::vector<layer_trace<S>> layers; ///< one per expert layer as run
};

/// windows: `sequences` windows of seq_len + 1 tokens each, one after the other; a window's
/// first seq_len tokens are the input (positions 0..seq_len-1), its last seq_len the targets.
/// grad: a model of the same config, overwritten with d loss / d parameter (tau and selection
/// biases get none: they are calibrated, not learned). Throws std::invalid_argument on input
/// that does not fit the model.
template <class S>
lm_step_result<S> lm_loss_and_gradient(const basic_model<S>& m,
                                       std::span<const std::uint8_t> windows,
                                       Eigen::Index seq_len, const loss_options& opt,
                                       basic_model<S>* grad);

extern template lm_step_result<float>
lm_loss_and_gradient<float>(const basic_model<float>&, std::span<const std::uint8_t>, Eigen::Index,
                            const loss_options&, basic_model<float>*);
extern template lm_step_result<double>
lm_loss_and_gradient<double>(const basic_model<double>&, std::span<const std::uint8_t>,
                             Eigen::Index, const loss_options&, basic_model<double>*);

} // namespace eoe::experts
