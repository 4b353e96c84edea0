#include "tools/eoe/token_input.hpp"

#include "experts/data/fashion_mnist.hpp"
#include "experts/base/rng.hpp"
#include "experts/base/utf8.hpp"
#include "tools/eoe/commands.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace eoe::cli {

namespace {

/// A value of the file for an error message: escaped, at most 24 bytes of it.
std::string shown(std::string_view value) {
  return experts::loggable(value, 24);
}

bool separator(char c) {
  return c == ' ' || c == ',' || c == '\t' || c == '\r';
}

token_batch read_text(const std::string& path, int width) {
  const auto name = experts::escape_invalid_utf8(path); // a path is any bytes
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw command_error{name + ": is a folder, not a file of tokens"};
  std::ifstream in{path, std::ios::binary};
  if (!in)
    throw command_error{name + ": cannot open the input file"};
  std::vector<std::vector<float>> rows;
  std::string line;
  int ln = 1;
  for (; std::getline(in, line); ++ln) {
    std::vector<float> row;
    size_t col = 0;
    while (col < line.size()) {
      while (col < line.size() && separator(line[col]))
        ++col;
      if (col >= line.size() || line[col] == '#')
        break;
      // The value is the text up to the next separator: strtof alone would stop at a NUL byte
      // (the string's end to it) or read "1x" as 1 and leave the rest for the next value.
      size_t stop = col;
      while (stop < line.size() && !separator(line[stop]) && line[stop] != '#')
        ++stop;
      const std::string value = line.substr(col, stop - col);
      const auto where = name + ":" + std::to_string(ln) + ":" + std::to_string(col + 1) + ": ";
      char* end = nullptr;
      errno = 0;
      const float v = std::strtof(value.c_str(), &end);
      if (end != value.c_str() + value.size())
        throw command_error{where + "expected a number, got '" + shown(value) + "'"};
      if (errno == ERANGE || !std::isfinite(v))
        throw command_error{where + "'" + shown(value) + "' is not a finite float32 (its range is "
                            "1.2e-38 to 3.4e38 in magnitude, or 0)"};
      row.push_back(v);
      col = stop;
    }
    if (row.empty())
      continue;
    if (static_cast<int>(row.size()) != width)
      throw command_error{name + ":" + std::to_string(ln) + ": " + std::to_string(row.size())
                          + " values, the model takes " + std::to_string(width) + " per token"};
    rows.push_back(std::move(row));
  }
  // getline stops at the end and at a read error alike: the tokens must not be cut silently.
  if (in.bad())
    throw command_error{name + ":" + std::to_string(ln) + ": read error"};
  if (rows.empty())
    throw command_error{name + ": no tokens (one line of " + std::to_string(width)
                        + " numbers per token)"};
  token_batch b;
  b.x.resize(static_cast<Eigen::Index>(rows.size()), width);
  for (size_t r = 0; r < rows.size(); ++r)
    for (int c = 0; c < width; ++c)
      b.x(static_cast<Eigen::Index>(r), c) = rows[r][c];
  b.labels.assign(rows.size(), -1);
  b.what = std::to_string(rows.size()) + " tokens from " + name;
  return b;
}

} // namespace

token_batch load_tokens(const std::string& source, size_t n, const experts::model_config& c) {
  const int width = c.input_dim > 0 ? c.input_dim : c.dim;
  std::string kind = source;
  if (kind == "auto")
    kind = width == experts::fashion_mnist_pixels ? "fashion" : "random";
  token_batch b;
  if (kind == "fashion") {
    if (width != experts::fashion_mnist_pixels)
      throw command_error{"input fashion: the model takes " + std::to_string(width)
                          + " inputs per token, a Fashion-MNIST image has 784"};
    auto data = experts::load_fashion_mnist("test", n);
    if (!data)
      throw command_error{data.error().message};
    b.x = std::move(data->images);
    b.labels.assign(data->labels.begin(), data->labels.end());
    b.what = std::to_string(b.x.rows()) + " Fashion-MNIST test images";
    return b;
  }
  if (kind == "random") {
    experts::rng r{c.seed ^ 0x5eedull};
    b.x.resize(static_cast<Eigen::Index>(n), width);
    for (Eigen::Index i = 0; i < b.x.size(); ++i)
      b.x.data()[i] = static_cast<float>(r.normal());
    b.labels.assign(n, -1);
    b.what = std::to_string(n) + " random N(0, 1) tokens";
    return b;
  }
  return read_text(source, width);
}

} // namespace eoe::cli
