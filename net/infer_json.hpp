#pragma once
// The HTTP gateway's request and answer bodies, as pure functions (tested and fuzzed without a
// server). A request:
//   {"tokens": [[x, ...], ...]}                       rows of the model's input width, or
//   {"tokens_b64": "...", "rows": T}                  T rows of little-endian float32, base64
// with optional "ids" (one unsigned integer per token), "deadline_ms" (1..3600000) and
// "trace" (bool). Every error names the field (and the row, column or character) at fault.

#include "actors/messages.hpp"
#include "experts/base/model_config.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::net {

struct infer_body_limits {
  std::uint32_t input_width = 0;      ///< the model's input width
  std::uint32_t max_tokens = 65536;
  std::uint32_t default_deadline_ms = 5000;
};

/// Checks what a JSON body's bytes must be before it is parsed: UTF-8 (RFC 8259) and no NUL
/// byte (nlohmann's parser takes a NUL for the end of the text and would drop what follows).
/// Throws std::invalid_argument naming the byte ("body byte 153: 0xFF is not UTF-8 (...)").
void check_json_text(std::string_view body);

/// Throws std::invalid_argument with a message that names what is wrong.
actors::infer_request parse_infer_body(std::string_view body, const infer_body_limits& limits);

/// The answer as JSON: request, epoch, trace id, output rows, and per layer as run ("layer":
/// its config layer L, and "step" for each step of a recurrent layer) and token the active
/// experts, by stable id E, with their gates: L.E as /v1/topology and `eoe status` name them.
std::string infer_result_json(const actors::infer_result& r);

/// Strict base64 (RFC 4648, padding required); throws std::invalid_argument naming the first
/// bad character's position.
std::string decode_base64(std::string_view text);
std::string encode_base64(std::string_view bytes);

} // namespace eoe::net
