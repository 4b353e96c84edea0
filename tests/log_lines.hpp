#pragma once
// What a log the tests read holds: its lines, and whether they are the expected ones (each
// once, in any order: threads write them).

#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace eoe::test {

/// The lines of `text`, each without its newline.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

/// Checks that the lines of `log` are those of `want`, each once, in any order; a failure
/// shows the log, named `what`.
inline void check_lines_once(const std::string& what, const std::string& log,
                             const std::vector<std::string>& want) {
  INFO(what << ":\n" << log);
  const auto seen = lines_of(log);
  for (const auto& w : want)
    CHECK(std::count(seen.begin(), seen.end(), w) == 1);
  CHECK(seen.size() == want.size());
}

} // namespace eoe::test
