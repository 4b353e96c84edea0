#include "experts/data/image_augment.hpp"

#include <vector>

namespace eoe::experts {

void augment_images(matrix& images, rng& r, int side, int max_shift) {
  std::vector<float> src(static_cast<size_t>(side * side));
  const auto span = static_cast<std::uint64_t>(2 * max_shift + 1);
  for (Eigen::Index i = 0; i < images.rows(); ++i) {
    float* row = images.row(i).data();
    std::copy(row, row + side * side, src.begin());
    const bool flip = r.next() & 1;
    const int dx = static_cast<int>(r.next() % span) - max_shift;
    const int dy = static_cast<int>(r.next() % span) - max_shift;
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        const int sx0 = x - dx, sy = y - dy;
        const int sx = flip ? side - 1 - sx0 : sx0;
        row[y * side + x] = (sx >= 0 && sx < side && sy >= 0 && sy < side)
                              ? src[static_cast<size_t>(sy * side + sx)]
                              : 0.0f;
      }
  }
}

} // namespace eoe::experts
