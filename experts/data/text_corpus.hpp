#pragma once
// A byte-level text corpus for the language model: the fortunes the Debian package
// `fortunes` ships (/usr/share/games/fortunes, about 2.6 MB of English text in files whose
// fortunes are separated by lines holding only '%'), split deterministically by fortune into
// training and validation text.

#include "experts/base/error.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::experts {

inline constexpr const char* fortunes_dir = "/usr/share/games/fortunes";

/// Training and validation text; each fortune is followed by the "%\n" line that ends it in
/// its file, so a model also learns where a fortune ends.
struct text_corpus {
  std::string train;
  std::string validation;
  std::string source;        ///< the directory read
  size_t files = 0;          ///< fortune files read (sorted by name)
  size_t fortunes = 0;       ///< non-empty fortunes in them
  size_t validation_fortunes = 0;
};

/// The fortunes of one file's text, without their '%' lines; blank ones are dropped.
std::vector<std::string> split_fortunes(std::string_view text);

/// Reads every fortune file of `dir` (regular files, sorted by name, not *.dat or *.u8;
/// subdirectories are not read) and sends fortune number i (counted over all files in order)
/// to validation when i % validation_every == validation_every - 1, else to training.
/// Errors name the path; a missing corpus says which package ships it.
expected<text_corpus> load_text_corpus(const std::string& dir = fortunes_dir,
                                       int validation_every = 20);

} // namespace eoe::experts
