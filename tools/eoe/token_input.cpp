#include "tools/eoe/token_input.hpp"

#include "experts/fashion_mnist.hpp"
#include "experts/rng.hpp"
#include "tools/eoe/commands.hpp"

#include <cerrno>
#include <cstdlib>
#include <fstream>

namespace eoe::cli {

namespace {

token_batch read_text(const std::string& path, int width) {
  std::ifstream in{path};
  if (!in)
    throw command_error{path + ": cannot open the input file"};
  std::vector<std::vector<float>> rows;
  std::string line;
  for (int ln = 1; std::getline(in, line); ++ln) {
    std::vector<float> row;
    size_t col = 0;
    while (col < line.size()) {
      while (col < line.size() && (line[col] == ' ' || line[col] == ',' || line[col] == '\t'
                                   || line[col] == '\r'))
        ++col;
      if (col >= line.size() || line[col] == '#')
        break;
      const char* start = line.c_str() + col;
      char* end = nullptr;
      errno = 0;
      const float v = std::strtof(start, &end);
      if (end == start || errno == ERANGE)
        throw command_error{path + ":" + std::to_string(ln) + ":" + std::to_string(col + 1)
                            + ": expected a number, got '" + line.substr(col, 12) + "'"};
      row.push_back(v);
      col += static_cast<size_t>(end - start);
    }
    if (row.empty())
      continue;
    if (static_cast<int>(row.size()) != width)
      throw command_error{path + ":" + std::to_string(ln) + ": " + std::to_string(row.size())
                          + " values, the model takes " + std::to_string(width) + " per token"};
    rows.push_back(std::move(row));
  }
  if (rows.empty())
    throw command_error{path + ": no tokens (one line of " + std::to_string(width)
                        + " numbers per token)"};
  token_batch b;
  b.x.resize(static_cast<Eigen::Index>(rows.size()), width);
  for (size_t r = 0; r < rows.size(); ++r)
    for (int c = 0; c < width; ++c)
      b.x(static_cast<Eigen::Index>(r), c) = rows[r][c];
  b.labels.assign(rows.size(), -1);
  b.what = std::to_string(rows.size()) + " tokens from " + path;
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
