// The fortunes corpus: files read in sorted order, '%' lines split fortunes, every 20th
// fortune goes to validation, the .dat and .u8 files are ignored, and a missing corpus names
// its path and the package that ships it.

#include "experts/data/text_corpus.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace eoe::experts;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("eoe_corpus_" + std::to_string(::getpid()) + "_"
                                        + std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream{path / name, std::ios::binary} << text;
  }
};

std::string read(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace

TEST_CASE("fortunes split at lines holding only '%'", "[corpus]") {
  CHECK(split_fortunes("a\n%\nb\nc%\n%\n\n  \n%\nd") == std::vector<std::string>{"a\n", "b\nc%\n", "d\n"});
  CHECK(split_fortunes("%\n%\n").empty());
  CHECK(split_fortunes("one\r\n%\r\ntwo\n") == std::vector<std::string>{"one\r\n", "two\n"});
}

TEST_CASE("a corpus directory: sorted files, every n-th fortune to validation", "[corpus]") {
  temp_dir d;
  d.write("b", "b1\n%\nb2\n%\nb3\n");
  d.write("a", "a1\n%\na2\n%\n");
  d.write("a.dat", "\x02\x00binary index");
  fs::create_symlink(d.path / "a", d.path / "a.u8");
  fs::create_directories(d.path / "off");
  d.write("off/c", "c1\n%\nc2\n");
  auto c = load_text_corpus(d.path.string(), 2);
  REQUIRE(c.has_value());
  CHECK(c->files == 2);
  CHECK(c->fortunes == 5);
  CHECK(c->validation_fortunes == 2);
  CHECK(c->train == "a1\n%\nb1\n%\nb3\n%\n");
  CHECK(c->validation == "a2\n%\nb2\n%\n");
}

TEST_CASE("the Debian fortunes corpus loads deterministically", "[corpus]") {
  auto c = load_text_corpus();
  REQUIRE(c.has_value());
  // Counted another way: every fortune file, every non-blank block between '%' lines.
  size_t files = 0, fortunes = 0, bytes = 0;
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(fortunes_dir))
    if (e.is_regular_file() && !e.path().has_extension())
      names.push_back(e.path().filename());
  for (auto& n : names) {
    auto text = read(fs::path(fortunes_dir) / n);
    size_t here = 0;
    std::istringstream lines{text};
    std::string line, block;
    auto end_block = [&] {
      if (block.find_first_not_of(" \t\r\n") != std::string::npos) {
        ++here;
        bytes += block.size() + 2;
      }
      block.clear();
    };
    while (std::getline(lines, line)) {
      if (line == "%")
        end_block();
      else
        block += line + "\n";
    }
    end_block();
    files += here > 0;
    fortunes += here;
  }
  CHECK(c->files == files);
  CHECK(c->files >= 40);
  CHECK(c->fortunes == fortunes);
  CHECK(c->fortunes > 15000);
  CHECK(c->validation_fortunes == fortunes / 20);
  CHECK(c->train.size() + c->validation.size() == bytes);
  CHECK(c->train.size() > 2'000'000);
  CHECK(c->validation.size() > 100'000);
  auto again = load_text_corpus();
  REQUIRE(again.has_value());
  CHECK(again->train == c->train);
  CHECK(again->validation == c->validation);
}

TEST_CASE("a missing corpus names its path and the package", "[corpus]") {
  auto r = load_text_corpus("/nonexistent/fortunes");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::io);
  CHECK(r.error().message
        == "/nonexistent/fortunes: no such directory (the corpus is the Debian package "
           "'fortunes': apt-get install fortunes)");
  temp_dir d;
  d.write("x.dat", "index only");
  auto empty = load_text_corpus(d.path.string());
  REQUIRE_FALSE(empty.has_value());
  CHECK(empty.error().message
        == d.path.string() + ": 0 fortunes in files other than *.dat and *.u8; need at least 20 "
                             "(the corpus is the Debian package 'fortunes': apt-get install fortunes)");
  auto file = load_text_corpus((d.path / "x.dat").string());
  REQUIRE_FALSE(file.has_value());
  CHECK(file.error().message.ends_with("x.dat: not a directory (the corpus is the Debian package "
                                       "'fortunes': apt-get install fortunes)"));
}
