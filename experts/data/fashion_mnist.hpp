#pragma once
// Fashion-MNIST as Debian's dataset-fashion-mnist installs it: gzipped IDX files under
// /usr/share/datasets/fashion-mnist. Images become rows of 784 floats in [0, 1].

#include "experts/base/error.hpp"
#include "kernels/tensor.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::experts {

inline constexpr const char* fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
inline constexpr int fashion_mnist_pixels = 28 * 28;
inline constexpr std::array<std::string_view, 10> fashion_mnist_classes = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/// Images (N, 784) in [0, 1] and their labels (N) in 0..9.
struct labelled_images {
  matrix images;
  std::vector<std::uint8_t> labels;
};

/// The decompressed bytes of a gzipped file.
expected<std::vector<unsigned char>> read_gzip(const std::string& path);

/// Parses IDX bytes: magic (0, 0, type 0x08 = u8, rank), big-endian dims, then the data.
/// Returns the dims; `data` is set to the first data byte. `source` names it in errors.
expected<std::vector<std::uint32_t>> parse_idx(const std::vector<unsigned char>& bytes,
                                               int expected_rank, const std::string& source,
                                               const unsigned char** data);

/// "train" (60,000) or "test" (10,000); at most `limit` examples when limit > 0.
expected<labelled_images> load_fashion_mnist(std::string_view split, size_t limit = 0,
                                             const std::string& dir = fashion_mnist_dir);

} // namespace eoe::experts
