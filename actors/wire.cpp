#include "actors/wire.hpp"

#include <bit>
#include <cstring>

namespace eoe::actors {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

wire_tensor to_wire(const matrix& m) {
  wire_tensor t;
  t.rows = static_cast<std::uint32_t>(m.rows());
  t.cols = static_cast<std::uint32_t>(m.cols());
  t.bytes.assign(reinterpret_cast<const char*>(m.data()), m.size() * sizeof(float));
  return t;
}

matrix from_wire(const wire_tensor& t, const char* what) {
  const auto want = static_cast<std::uint64_t>(t.rows) * t.cols * sizeof(float);
  if (t.bytes.size() != want)
    throw std::invalid_argument(std::string{what} + ": a (" + std::to_string(t.rows) + ", "
                                + std::to_string(t.cols) + ") tensor needs " + std::to_string(want)
                                + " bytes, got " + std::to_string(t.bytes.size()));
  matrix m(t.rows, t.cols);
  if (want)
    std::memcpy(m.data(), t.bytes.data(), want);
  return m;
}

} // namespace eoe::actors
