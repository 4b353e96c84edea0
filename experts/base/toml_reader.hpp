#pragma once
// Strict reading of TOML tables for the config loaders: every key that is read is checked for
// type and range, every key that is not read is reported as unknown, and every problem names
// file, line, column and key. Internal to experts/.

#include "experts/base/error.hpp"

#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::experts {

/// Parses TOML text; a syntax error names source, line and column.
expected<toml::table> parse_toml(std::string_view text, std::string_view source);

/// "an integer (3)", "a string (\"x\")": how a node is named in errors (a string as
/// loggable() in experts/utf8 writes it).
std::string describe(const toml::node& n);


/// Collects every problem of a document, each as "file:line:col: key: message".
struct problems {
  std::string_view file;
  std::vector<std::string> lines;

  void add(const toml::source_region& at, const std::string& key, const std::string& msg);

  /// All lines joined by newlines.
  std::string joined() const;
};

/// Reads the keys of one table, remembering which were read so that the rest can be reported
/// as unknown.
class table_reader {
public:
  table_reader(const toml::table& t, std::string path, problems& out);

  std::string key_path(std::string_view key) const;

  /// Marks `key` as known and returns its node, if present.
  const toml::node* take(std::string_view key);

  void missing(std::string_view key, const std::string& expected);
  void bad(const toml::node& n, std::string_view key, const std::string& expected);

  std::optional<std::int64_t> integer(std::string_view key, std::int64_t lo, std::int64_t hi,
                                      std::optional<std::int64_t> fallback,
                                      const std::string& range_note = {});

  /// A float or an integer in [lo, hi].
  std::optional<double> number(std::string_view key, double lo, double hi,
                               std::optional<double> fallback);

  std::optional<bool> boolean(std::string_view key, bool fallback);

  std::optional<std::string> string(std::string_view key, std::optional<std::string> fallback);

  /// A string that must be one of `choices`.
  std::optional<std::string> choice(std::string_view key, std::vector<std::string_view> choices,
                                    std::optional<std::string> fallback);

  /// Reports every key that no reader asked for.
  void reject_unknown(std::string_view kind_note);

  const toml::table& table() const noexcept {
    return table_;
  }

  problems& out() noexcept {
    return out_;
  }

private:
  const toml::table& table_;
  std::string path_;
  problems& out_;
  std::vector<std::string> used_;
};

} // namespace eoe::experts
