#pragma once
// The bytes tcp_data_plane::send puts on the wire, built by hand: for tests that send frames,
// whole or damaged, to a data plane from a raw socket.

#include "actors/contribution_codec.hpp"

#include <cstdint>
#include <cstring>
#include <string>

namespace eoe::test {

/// A frame to `node`: u32 header length, u16 name length, the name, the header, the payloads.
inline std::string wire_frame(const std::string& node, const std::string& header,
                              const std::string& payloads) {
  std::string out(6, '\0');
  const auto header_len = static_cast<std::uint32_t>(header.size());
  const auto name_len = static_cast<std::uint16_t>(node.size());
  std::memcpy(out.data(), &header_len, 4);
  std::memcpy(out.data() + 4, &name_len, 2);
  return out + node + header + payloads;
}

inline std::string wire_frame(const std::string& node, const actors::contribution& c) {
  const auto whole = actors::encode_contribution(c);
  const auto header = actors::encode_header(c);
  return wire_frame(node, header, whole.substr(header.size()));
}

} // namespace eoe::test
