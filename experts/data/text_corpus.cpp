#include "experts/data/text_corpus.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace eoe::experts {

namespace fs = std::filesystem;

std::vector<std::string> split_fortunes(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  auto flush = [&] {
    if (current.find_first_not_of(" \t\r\n") != std::string::npos)
      out.push_back(current);
    current.clear();
  };
  size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    const auto line = text.substr(at, end == std::string_view::npos ? text.size() - at : end - at);
    at = end == std::string_view::npos ? text.size() : end + 1;
    if (line == "%" || line == "%\r") {
      flush();
      continue;
    }
    current.append(line);
    current.push_back('\n');
  }
  flush();
  return out;
}

expected<text_corpus> load_text_corpus(const std::string& dir, int validation_every) {
  const std::string hint = " (the corpus is the Debian package 'fortunes': apt-get install fortunes)";
  if (validation_every < 2)
    return fail(errc::data_invalid, "text corpus: validation_every must be at least 2");
  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (!fs::exists(status))
    return fail(errc::io, dir + ": no such directory" + hint);
  if (!fs::is_directory(status))
    return fail(errc::io, dir + ": not a directory" + hint);
  std::vector<std::string> names;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (name.ends_with(".dat") || name.ends_with(".u8") || name.starts_with("."))
      continue; // the index files strfile writes, and the UTF-8 links to the same texts
    std::error_code fe;
    if (it->is_regular_file(fe)) // not symlinks' targets twice: .u8 links are skipped above
      names.push_back(name);
  }
  if (ec)
    return fail(errc::io, dir + ": cannot list the directory: " + ec.message());
  std::sort(names.begin(), names.end());
  text_corpus c;
  c.source = dir;
  for (auto& name : names) {
    const auto path = (fs::path(dir) / name).string();
    std::ifstream in{path, std::ios::binary};
    std::ostringstream text;
    text << in.rdbuf();
    if (!in || in.bad())
      return fail(errc::io, path + ": cannot read");
    const auto fortunes = split_fortunes(text.str());
    if (fortunes.empty())
      continue;
    ++c.files;
    for (auto& f : fortunes) {
      const bool validation = c.fortunes % validation_every == static_cast<size_t>(validation_every - 1);
      auto& dst = validation ? c.validation : c.train;
      dst += f;
      dst += "%\n";
      c.validation_fortunes += validation;
      ++c.fortunes;
    }
  }
  if (c.fortunes < static_cast<size_t>(validation_every))
    return fail(errc::data_invalid, dir + ": " + std::to_string(c.fortunes)
                                      + " fortunes in files other than *.dat and *.u8; need at "
                                        "least "
                                      + std::to_string(validation_every) + hint);
  return c;
}

} // namespace eoe::experts
