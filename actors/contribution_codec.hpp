#pragma once
// A contribution as a frame of the data plane (net/tcp_data_plane), the path tensor payloads
// take between node processes. A frame is a header, then the five payloads as raw bytes
// (rows, scores, y, stream, ids), so that a sender writes them straight from the message that
// holds them and a receiver reads them straight into the strings that keep them: no copy
// beyond the kernel's. The header: "EOEC", a version byte, the fixed fields little-endian,
// the sender's node name, both tensor shapes, the trace fields, the kind (outputs or ranking
// scores) and the five payload lengths.
// Decoding checks every length against what is there and every tensor's byte count against
// its shape, and names the field and byte offset at fault.

#include "actors/messages.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace eoe::actors {

/// Payload bytes a frame may carry in all (a corrupt length must not allocate the machine).
inline constexpr std::uint64_t max_frame_payload = std::uint64_t{1} << 30;

std::string encode_header(const contribution& c);

/// The header's fields, with every payload string sized to its length (contents unset);
/// throws std::invalid_argument naming the field and byte when the header is malformed.
contribution decode_header(std::string_view header);

/// The same checks, with the payload strings left empty and their lengths in `lengths`
/// (frame order): for a receiver that sizes each payload as its bytes arrive, so that a
/// length a peer declares but never sends costs no memory.
contribution decode_header(std::string_view header, std::array<std::uint64_t, 5>& lengths);

/// The name of payload i (0 to 4) in frame order, for messages: rows, scores, y, stream, ids.
const char* payload_name(std::size_t i);

/// The payload strings of a contribution, in frame order.
std::array<std::string*, 5> payloads(contribution& c);
std::array<const std::string*, 5> payloads(const contribution& c);

/// The whole frame in one string (header, then payloads), and back; decode_contribution also
/// rejects a frame that ends early or goes on past its payloads.
std::string encode_contribution(const contribution& c);
contribution decode_contribution(std::string_view frame);

} // namespace eoe::actors
