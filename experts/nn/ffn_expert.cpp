#include "experts/nn/ffn_expert.hpp"

namespace eoe::experts {

void expert_scores(kernels::backend& be, const ffn_expert& w, int columns, const matrix& x,
                   matrix& u, vector& scores) {
  if (w.factored()) {
    be.gemm(x, w.a, u);
    if (columns >= u.cols()) {
      be.row_norms(u, scores);
      return;
    }
    const matrix head = u.leftCols(columns);
    be.row_norms(head, scores);
    return;
  }
  matrix part;
  if (columns >= w.w1.cols()) {
    be.gemm(x, w.w1, part);
  } else {
    const matrix w1_head = w.w1.leftCols(columns);
    be.gemm(x, w1_head, part);
  }
  be.row_norms(part, scores);
}

void expert_forward(kernels::backend& be, const ffn_expert& w, kernels::activation act,
                    const matrix& in, matrix& hidden, matrix& y) {
  be.gemm(in, w.w1, hidden);
  be.bias_activation(hidden, w.b1, act);
  be.gemm(hidden, w.w2, y);
  be.add_bias(y, w.b2);
}

} // namespace eoe::experts
