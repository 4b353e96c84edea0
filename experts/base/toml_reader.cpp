#include "experts/base/toml_reader.hpp"

#include "experts/base/utf8.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>

namespace eoe::experts {

namespace {

/// "line:column" of byte `offset`, the text before it well-formed (columns count characters).
std::string position(std::string_view t, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (t[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(t[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return std::to_string(line) + ":" + std::to_string(col);
}

/// The first byte that is not part of well-formed UTF-8, as "line:column: byte 0xFF", or "".
/// toml++ refuses such text too ("Encountered invalid utf-8 sequence") but names no byte, and
/// untrusted_code_point below must only decode well-formed sequences.
std::string invalid_utf8(std::string_view t) {
  const auto f = find_invalid_utf8(t);
  if (!f)
    return {};
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", f->byte);
  return position(t, f->offset) + ": byte " + hex;
}

/// The first code point toml++ 3.3.0 cannot be trusted with, as "line:column: U+XXXX", or "".
/// Testing a character of U+00A1..U+0499, U+2C5E..U+3057 (but U+3000) or U+FB26..U+FEFE for
/// whitespace reaches __builtin_unreachable() in its unicode tables (the blocks its bit mask
/// leaves to a switch that does not handle them): undefined behaviour, found by fuzzing in
/// three places of the grammar (bare text, after a line-ending backslash, inside a malformed
/// value). Such characters are refused wherever they are, before toml++ sees the text.
std::string untrusted_code_point(std::string_view t) {
  for (size_t i = 0; i < t.size();) {
    // The text is well-formed UTF-8 (invalid_utf8 ran first): every sequence decodes, a
    // four-byte one too (past U+FEFF, which toml++'s test handles).
    const auto b = static_cast<unsigned char>(t[i]);
    const size_t len = std::max<size_t>(1, utf8_sequence_length(t, i));
    char32_t c = len == 1 ? b : len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
    for (size_t k = 1; k < len; ++k)
      c = (c << 6) | (static_cast<unsigned char>(t[i + k]) & 0x3F);
    if ((c >= 0xA1 && c < 0x49A) || (c >= 0x2C5E && c < 0x3058 && c != 0x3000)
        || (c >= 0xFB26 && c < 0xFEFF)) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "U+%04X", static_cast<unsigned>(c));
      return position(t, i) + ": " + hex;
    }
    i += len;
  }
  return {};
}

/// Where TOML allows no non-ASCII character (outside strings and comments), the first one, as
/// "line:column", or "" when there is none: a clearer error than the parser's.
std::string stray_non_ascii(std::string_view t) {
  size_t line = 1, col = 1;
  const auto advance = [&](size_t& i) {
    if (t[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(t[i]) & 0xC0) != 0x80) {
      ++col; // columns count characters, not UTF-8 continuation bytes
    }
    ++i;
  };
  for (size_t i = 0; i < t.size();) {
    const char c = t[i];
    if (c == '#') { // a comment, to the end of the line
      while (i < t.size() && t[i] != '\n')
        advance(i);
      continue;
    }
    if (c == '"' || c == '\'') {
      const bool multi = t.substr(i, 3) == std::string(3, c);
      const bool escapes = c == '"';
      const size_t open = multi ? 3 : 1;
      for (size_t k = 0; k < open; ++k)
        advance(i);
      while (i < t.size()) {
        if (escapes && t[i] == '\\' && i + 1 < t.size()) {
          advance(i);
          advance(i);
          continue;
        }
        if (!multi && t[i] == '\n')
          break; // an unterminated string: the parser reports it
        if (t.substr(i, open) == std::string(open, c)) {
          for (size_t k = 0; k < open; ++k)
            advance(i);
          break;
        }
        advance(i);
      }
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80)
      return std::to_string(line) + ":" + std::to_string(col);
    advance(i);
  }
  return {};
}

} // namespace

expected<toml::table> parse_toml(std::string_view text, std::string_view source) {
  if (const auto at = invalid_utf8(text); !at.empty())
    return fail(errc::config_syntax, std::string{source} + ":" + at
                                       + " is not UTF-8 (a TOML file is UTF-8 text)");
  if (const auto at = untrusted_code_point(text); !at.empty())
    return fail(errc::config_syntax, std::string{source} + ":" + at
                                       + " is a character the TOML parser of this build cannot "
                                         "read safely (toml++ 3.3.0: U+00A1..U+0499, "
                                         "U+2C5E..U+3057, U+FB26..U+FEFE)");
  if (const auto at = stray_non_ascii(text); !at.empty())
    return fail(errc::config_syntax, std::string{source} + ":" + at
                                       + ": TOML syntax: a non-ASCII character outside a string "
                                         "or a comment");
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column
       << ": TOML syntax: " << loggable(e.description(), 600);
    return fail(errc::config_syntax, os.str());
  }
}

std::string describe(const toml::node& n) {
  std::ostringstream os;
  switch (n.type()) {
    case toml::node_type::string:
      os << "a string (\"" << loggable(n.as_string()->get()) << "\")";
      break;
    case toml::node_type::integer: os << "an integer (" << n.as_integer()->get() << ")"; break;
    case toml::node_type::floating_point:
      os << "a float (" << n.as_floating_point()->get() << ")";
      break;
    case toml::node_type::boolean:
      os << "a boolean (" << (n.as_boolean()->get() ? "true" : "false") << ")";
      break;
    case toml::node_type::array: os << "an array"; break;
    case toml::node_type::table: os << "a table"; break;
    default: os << "a date or time"; break;
  }
  return os.str();
}

void problems::add(const toml::source_region& at, const std::string& key, const std::string& msg) {
  std::ostringstream os;
  // A key is the file's text: any characters (a quoted key may hold control characters), any
  // length.
  os << file << ":" << at.begin.line << ":" << at.begin.column << ": " << loggable(key, 160)
     << ": " << msg;
  lines.push_back(os.str());
}

std::string problems::joined() const {
  std::string msg;
  for (auto& l : lines)
    msg += (msg.empty() ? "" : "\n") + l;
  return msg;
}

table_reader::table_reader(const toml::table& t, std::string path, problems& out)
  : table_(t), path_(std::move(path)), out_(out) {
  // nop
}

std::string table_reader::key_path(std::string_view key) const {
  return path_.empty() ? std::string{key} : path_ + "." + std::string{key};
}

const toml::node* table_reader::take(std::string_view key) {
  used_.emplace_back(key);
  return table_.get(key);
}

void table_reader::missing(std::string_view key, const std::string& expected) {
  out_.add(table_.source(), key_path(key), "missing; expected " + expected);
}

void table_reader::bad(const toml::node& n, std::string_view key, const std::string& expected) {
  out_.add(n.source(), key_path(key), "expected " + expected + ", got " + describe(n));
}

std::optional<std::int64_t> table_reader::integer(std::string_view key, std::int64_t lo,
                                                  std::int64_t hi,
                                                  std::optional<std::int64_t> fallback,
                                                  const std::string& range_note) {
  std::ostringstream want;
  want << "an integer in " << lo << ".." << hi << range_note;
  auto* n = take(key);
  if (!n) {
    if (!fallback)
      missing(key, want.str());
    return fallback;
  }
  auto v = n->as_integer();
  if (!v || v->get() < lo || v->get() > hi) {
    bad(*n, key, want.str());
    return std::nullopt;
  }
  return v->get();
}

std::optional<double> table_reader::number(std::string_view key, double lo, double hi,
                                           std::optional<double> fallback) {
  std::ostringstream want;
  want << "a number in [" << lo << ", " << hi << "]";
  auto* n = take(key);
  if (!n) {
    if (!fallback)
      missing(key, want.str());
    return fallback;
  }
  std::optional<double> v;
  if (auto i = n->as_integer())
    v = static_cast<double>(i->get());
  else if (auto f = n->as_floating_point())
    v = f->get();
  if (!v || !(*v >= lo && *v <= hi)) {
    bad(*n, key, want.str());
    return std::nullopt;
  }
  return v;
}

std::optional<bool> table_reader::boolean(std::string_view key, bool fallback) {
  auto* n = take(key);
  if (!n)
    return fallback;
  if (auto v = n->as_boolean())
    return v->get();
  bad(*n, key, "true or false");
  return std::nullopt;
}

std::optional<std::string> table_reader::string(std::string_view key,
                                                std::optional<std::string> fallback) {
  auto* n = take(key);
  if (!n) {
    if (!fallback)
      missing(key, "a string");
    return fallback;
  }
  if (auto v = n->as_string())
    return v->get();
  bad(*n, key, "a string");
  return std::nullopt;
}

std::optional<std::string> table_reader::choice(std::string_view key,
                                                std::vector<std::string_view> choices,
                                                std::optional<std::string> fallback) {
  std::string want = "one of";
  for (auto c : choices)
    want += std::string{" \""} + std::string{c} + "\"";
  auto* n = take(key);
  if (!n) {
    if (!fallback)
      missing(key, want);
    return fallback;
  }
  auto v = n->as_string();
  if (!v || std::find(choices.begin(), choices.end(), v->get()) == choices.end()) {
    bad(*n, key, want);
    return std::nullopt;
  }
  return v->get();
}

void table_reader::reject_unknown(std::string_view kind_note) {
  for (auto&& [k, n] : table_) {
    if (std::find(used_.begin(), used_.end(), k.str()) != used_.end())
      continue;
    std::string known;
    for (auto& u : used_)
      known += (known.empty() ? "" : ", ") + u;
    out_.add(k.source(), key_path(k.str()),
             std::string{"unknown key"} + std::string{kind_note} + " (expected one of: " + known
               + ")");
  }
}

} // namespace eoe::experts
