#pragma once
// Conversions between math types and the raw little-endian bytes messages carry. Every
// decoder checks sizes and names what does not fit.

#include "actors/messages.hpp"
#include "context_store/partial.hpp"
#include "experts/model/forward.hpp"
#include "kernels/tensor.hpp"

#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace eoe::actors {

/// How a decoded answer numbers its experts.
enum class expert_numbering {
  /// Positions in the epoch's layer, as the reference forward of the epoch's model (its
  /// checkpoint, model_atom) numbers them: mesh and reference compare directly.
  positions,
  /// Stable ids, as the answer carries them and /v1/topology and `eoe status` name them.
  stable_ids,
};

/// An answer decoded into the reference forward's types (output and activation records).
/// Throws std::invalid_argument on malformed bytes, or on an expert that is not a member.
experts::forward_result decode(const infer_result& r,
                               expert_numbering n = expert_numbering::positions);

/// A record's members: stable ids in position order (empty: none were sent, ids are positions).
std::vector<std::uint32_t> members_of(const wire_layer_record& l);

/// Partial attention on the wire and back.
wire_partial to_wire(const context::partial& p);
context::partial from_wire(const wire_partial& w);

/// A matrix as a wire tensor (bytes copied once).
wire_tensor to_wire(const matrix& m);

/// A wire tensor as a matrix; throws std::invalid_argument naming `what` when the byte count is
/// not rows * cols * 4.
matrix from_wire(const wire_tensor& t, const char* what);

/// Packs a span of trivially copyable values into bytes.
template <class T>
std::string pack(std::span<const T> values) {
  return std::string{reinterpret_cast<const char*>(values.data()), values.size_bytes()};
}

template <class T>
std::string pack(const std::vector<T>& values) {
  return pack(std::span<const T>{values});
}

/// Unpacks bytes into values; throws naming `what` when the size is not a multiple of T.
template <class T>
std::vector<T> unpack(const std::string& bytes, const char* what) {
  if (bytes.size() % sizeof(T) != 0)
    throw std::invalid_argument(std::string{what} + ": " + std::to_string(bytes.size())
                                + " bytes is not a whole number of " + std::to_string(sizeof(T))
                                + "-byte values");
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!bytes.empty())
    std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

} // namespace eoe::actors
