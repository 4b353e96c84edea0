#pragma once
// The tensor types every math folder speaks: row-major float32, (rows, cols) with rows = tokens
// by convention.

#include <Eigen/Core>

#include <cstdint>
#include <vector>

namespace eoe {

/// Row-major matrix of scalar S; activations are (tokens, features), weights (in, out).
/// float everywhere at run time; double where tests check gradients by finite differences.
template <class S>
using basic_matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Row-major float32 matrix.
using matrix = basic_matrix<float>;

/// Column vector of float32, one value per row of a matrix (scores, norms).
using vector = Eigen::VectorXf;

/// out (n, cols) = the rows of src that `rows` names, in its order.
template <class S>
void gather_rows(const basic_matrix<S>& src, const std::vector<std::int32_t>& rows,
                 basic_matrix<S>& out) {
  out.resize(static_cast<Eigen::Index>(rows.size()), src.cols());
  for (size_t r = 0; r < rows.size(); ++r)
    out.row(static_cast<Eigen::Index>(r)) = src.row(rows[r]);
}

/// x += b on every row, b (1, cols); an empty b (a layer without biases) adds nothing.
template <class S>
void add_row_bias(basic_matrix<S>& x, const basic_matrix<S>& b) {
  if (b.size())
    x.rowwise() += b.row(0);
}

} // namespace eoe
