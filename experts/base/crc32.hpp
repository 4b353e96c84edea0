#pragma once
// CRC-32 (IEEE 802.3, the polynomial of zlib and PNG), for checkpoint tensors.

#include <cstddef>
#include <cstdint>

namespace eoe::experts {

/// CRC-32 of n bytes, continuing from `crc` (0 to start).
std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

} // namespace eoe::experts
