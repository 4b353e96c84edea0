#include "experts/base/utf8.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace eoe::experts {

namespace {

/// How many bytes the well-formed sequence at text[i] has, or 0 with the reason.
std::size_t sequence_at(std::string_view text, std::size_t i, const char*& why) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = b(i);
  if (lead < 0x80)
    return 1;
  if (lead < 0xC0) {
    why = "a continuation byte without a lead byte";
    return 0;
  }
  if (lead < 0xC2 || lead > 0xF4) {
    why = lead < 0xC2 ? "an overlong form (never appears in UTF-8)" : "never appears in UTF-8";
    return 0;
  }
  const std::size_t n = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  // The second byte's range is narrower after four leads (Unicode table 3-7).
  unsigned char lo = 0x80, hi = 0xBF;
  const char* narrow = "";
  if (lead == 0xE0) {
    lo = 0xA0;
    narrow = "an overlong form";
  } else if (lead == 0xED) {
    hi = 0x9F;
    narrow = "a UTF-16 surrogate (U+D800..U+DFFF)";
  } else if (lead == 0xF0) {
    lo = 0x90;
    narrow = "an overlong form";
  } else if (lead == 0xF4) {
    hi = 0x8F;
    narrow = "past U+10FFFF";
  }
  for (std::size_t k = 1; k < n; ++k) {
    if (i + k >= text.size()) {
      why = "begins a multi-byte sequence that the text ends inside";
      return 0;
    }
    const unsigned char c = b(i + k);
    if (c < 0x80 || c > 0xBF) {
      why = "begins a multi-byte sequence that breaks off";
      return 0;
    }
    if (k == 1 && (c < lo || c > hi)) {
      why = narrow;
      return 0;
    }
  }
  return n;
}

void append_hex(std::string& out, unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", c);
  out += buf;
}

} // namespace

std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept {
  const char* why = "";
  return i < text.size() ? sequence_at(text, i, why) : 0;
}

std::optional<utf8_fault> find_invalid_utf8(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    // Eight ASCII bytes at a time (a request body is mostly ASCII).
    std::uint64_t w;
    while (i + 8 <= text.size() && (std::memcpy(&w, text.data() + i, 8), (w & 0x8080808080808080u) == 0))
      i += 8;
    if (i == text.size())
      break;
    const char* why = "";
    const auto n = sequence_at(text, i, why);
    if (n == 0)
      return utf8_fault{i, static_cast<unsigned char>(text[i]), why};
    i += n;
  }
  return std::nullopt;
}

std::string describe(std::string_view what, const utf8_fault& f) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", f.byte);
  return std::string(what) + " byte " + std::to_string(f.offset + 1) + ": " + hex
         + " is not UTF-8 (" + f.why + ")";
}

void require_utf8(std::string_view what, std::string_view text) {
  if (const auto f = find_invalid_utf8(text))
    throw std::invalid_argument(describe(what, *f));
}

std::string escape_invalid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const char* why = "";
    if (const auto n = sequence_at(text, i, why); n > 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      append_hex(out, static_cast<unsigned char>(text[i]));
      ++i;
    }
  }
  return out;
}

std::string quote_input(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes)
    return escape_invalid_utf8(text);
  // Cut at a sequence boundary where one is near, so the cut adds no fault of its own.
  std::size_t cut = max_bytes;
  while (cut > 0 && cut > max_bytes - 3 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
    --cut;
  return escape_invalid_utf8(text.substr(0, cut)) + "... (" + std::to_string(text.size())
         + " bytes)";
}

std::string loggable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  for (char c : quote_input(text, max_bytes)) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F)
      append_hex(out, b);
    else
      out += c;
  }
  return out;
}

} // namespace eoe::experts
