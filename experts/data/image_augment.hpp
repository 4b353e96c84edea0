#pragma once
// Data augmentation for square grey images stored one per row: random horizontal flips and
// small random shifts (zero-filled). Fashion-MNIST's classes are left-right symmetric, so a
// flipped shirt is still a shirt.

#include "experts/base/rng.hpp"
#include "kernels/tensor.hpp"

namespace eoe::experts {

/// Each row of images (N, side * side) is flipped with probability 1/2 and shifted by a
/// uniform offset in [-max_shift, max_shift] along each axis.
void augment_images(matrix& images, rng& r, int side = 28, int max_shift = 2);

} // namespace eoe::experts
