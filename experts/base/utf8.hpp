#pragma once
// Text from outside (an HTTP body, a request target, a trace line, a config or token file)
// checked for well-formed UTF-8 and quoted safely: nlohmann's dump throws on a byte that is
// not UTF-8, and a log or a terminal should not receive raw bytes or control characters. Well-formed is RFC 3629 / Unicode's
// table 3-7: no overlong forms, no surrogates (U+D800..U+DFFF), nothing past U+10FFFF.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace eoe::experts {

/// The first byte of a text that is not well-formed UTF-8.
struct utf8_fault {
  std::size_t offset = 0;  ///< from 0; the lead byte of a sequence that breaks off
  unsigned char byte = 0;  ///< the byte at offset
  const char* why = "";    ///< "never appears in UTF-8", "an overlong form", ...
};

/// The length of the well-formed sequence that begins at text[i] (1..4), or 0 when none does.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept;

/// nullopt when the whole text is well-formed UTF-8.
std::optional<utf8_fault> find_invalid_utf8(std::string_view text) noexcept;

/// "body byte 153: 0xFF is not UTF-8 (never appears in UTF-8)": `what` names the text, the
/// byte is counted from 1.
std::string describe(std::string_view what, const utf8_fault& f);

/// Throws std::invalid_argument(describe(what, fault)) where the text is not well-formed UTF-8.
void require_utf8(std::string_view what, std::string_view text);

/// The text with every byte that is not part of well-formed UTF-8 written as \xFF (four ASCII
/// characters): always valid UTF-8, the bad bytes still readable.
std::string escape_invalid_utf8(std::string_view text);

/// Outside text for an error message: escaped as above and, past max_bytes, cut with the
/// length said ("abc... (1048576 bytes)"), so an error never echoes a huge input whole.
std::string quote_input(std::string_view text, std::size_t max_bytes = 80);

/// Outside text for a log line: quote_input's escapes and cut, and control characters (a
/// newline, an escape sequence) as \xNN too, so that it cannot break the log's lines or write
/// to a terminal.
std::string loggable(std::string_view text, std::size_t max_bytes = 80);

} // namespace eoe::experts
