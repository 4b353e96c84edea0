#pragma once
// The tensor types every math folder speaks: row-major float32, (rows, cols) with rows = tokens
// by convention.

#include <Eigen/Core>

namespace eoe {

/// Row-major float32 matrix; activations are (tokens, features), weights (in, out).
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Column vector of float32, one value per row of a matrix (scores, norms).
using vector = Eigen::VectorXf;

} // namespace eoe
