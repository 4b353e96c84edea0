#include "experts/ffn_expert.hpp"

namespace eoe::experts {

void expert_scores(kernels::backend& be, const ffn_expert& w, const matrix& x, matrix& u,
                   vector& scores) {
  be.gemm(x, w.a, u);
  be.row_norms(u, scores);
}

void expert_forward(kernels::backend& be, const ffn_expert& w, kernels::activation act,
                    const matrix& in, matrix& hidden, matrix& y) {
  be.gemm(in, w.w1, hidden);
  be.bias_activation(hidden, w.b1, act);
  be.gemm(hidden, w.w2, y);
  be.add_bias(y, w.b2);
}

} // namespace eoe::experts
