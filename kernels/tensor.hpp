#pragma once
// The tensor types every math folder speaks: row-major float32, (rows, cols) with rows = tokens
// by convention.

#include <Eigen/Core>

namespace eoe {

/// Row-major matrix of scalar S; activations are (tokens, features), weights (in, out).
/// float everywhere at run time; double where tests check gradients by finite differences.
template <class S>
using basic_matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Row-major float32 matrix.
using matrix = basic_matrix<float>;

/// Column vector of float32, one value per row of a matrix (scores, norms).
using vector = Eigen::VectorXf;

} // namespace eoe
