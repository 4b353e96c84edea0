#pragma once
// Where a command's input tokens come from: Fashion-MNIST test images, seeded random tokens,
// or a text file of floats (one token per line, separated by spaces or commas).

#include "experts/base/model_config.hpp"
#include "kernels/tensor.hpp"

#include <string>
#include <vector>

namespace eoe::cli {

struct token_batch {
  matrix x;
  std::vector<int> labels; ///< -1 where unknown
  std::string what;        ///< "8 Fashion-MNIST test images"
};

/// "fashion" (the first n test images), "random" (n seeded N(0,1) tokens), "auto" (fashion for
/// 784-input models, else random), or a path to a text file. Throws command_error naming the
/// line and column of a bad value.
token_batch load_tokens(const std::string& source, size_t n, const experts::model_config& c);

} // namespace eoe::cli
