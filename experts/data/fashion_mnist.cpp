#include "experts/data/fashion_mnist.hpp"

#include <zlib.h>

#include <filesystem>
#include <sstream>

namespace eoe::experts {

namespace {

const std::string install_hint =
  " (Fashion-MNIST comes from Debian: apt-get install dataset-fashion-mnist)";

} // namespace

expected<std::vector<unsigned char>> read_gzip(const std::string& path) {
  if (!std::filesystem::exists(path))
    return fail(errc::io, path + ": not found" + install_hint);
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f)
    return fail(errc::io, path + ": cannot open" + install_hint);
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int code = 0;
      std::string msg = gzerror(f, &code);
      gzclose(f);
      return fail(errc::data_invalid, path + ": not a valid gzip stream after "
                                        + std::to_string(out.size()) + " bytes: " + msg);
    }
    if (n == 0)
      break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

expected<std::vector<std::uint32_t>> parse_idx(const std::vector<unsigned char>& bytes,
                                               int expected_rank, const std::string& source,
                                               const unsigned char** data) {
  if (bytes.size() < 4)
    return fail(errc::data_invalid, source + ": " + std::to_string(bytes.size())
                                      + " bytes, too short for the IDX magic (bytes [0, 4))");
  if (bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != expected_rank) {
    std::ostringstream os;
    os << source << ": bytes [0, 4): IDX magic 00 00 08 0" << expected_rank
       << " (unsigned bytes, rank " << expected_rank << ") expected, got " << std::hex
       << int(bytes[0]) << " " << int(bytes[1]) << " " << int(bytes[2]) << " " << int(bytes[3]);
    return fail(errc::data_invalid, os.str());
  }
  const size_t header = 4 + 4 * static_cast<size_t>(expected_rank);
  if (bytes.size() < header)
    return fail(errc::data_invalid, source + ": truncated in the dimensions (bytes [4, "
                                      + std::to_string(header) + "))");
  std::vector<std::uint32_t> dims;
  std::uint64_t count = 1;
  for (int i = 0; i < expected_rank; ++i) {
    const unsigned char* p = bytes.data() + 4 + 4 * i;
    dims.push_back((std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16)
                   | (std::uint32_t{p[2]} << 8) | p[3]);
    count *= dims.back();
  }
  if (bytes.size() - header != count)
    return fail(errc::data_invalid, source + ": the dimensions promise " + std::to_string(count)
                                      + " data bytes after byte " + std::to_string(header)
                                      + ", the file has " + std::to_string(bytes.size() - header));
  *data = bytes.data() + header;
  return dims;
}

expected<labelled_images> load_fashion_mnist(std::string_view split, size_t limit,
                                             const std::string& dir) {
  if (split != "train" && split != "test")
    return fail(errc::data_invalid,
                "fashion-mnist split '" + std::string{split} + "': expected \"train\" or \"test\"");
  const std::string prefix = dir + "/" + (split == "train" ? "train" : "t10k");
  const auto images_path = prefix + "-images-idx3-ubyte.gz";
  const auto labels_path = prefix + "-labels-idx1-ubyte.gz";

  auto image_bytes = read_gzip(images_path);
  if (!image_bytes)
    return eoe::unexpected(image_bytes.error());
  auto label_bytes = read_gzip(labels_path);
  if (!label_bytes)
    return eoe::unexpected(label_bytes.error());
  const unsigned char *pix = nullptr, *lab = nullptr;
  auto idims = parse_idx(*image_bytes, 3, images_path, &pix);
  if (!idims)
    return eoe::unexpected(idims.error());
  auto ldims = parse_idx(*label_bytes, 1, labels_path, &lab);
  if (!ldims)
    return eoe::unexpected(ldims.error());
  if ((*idims)[1] != 28 || (*idims)[2] != 28)
    return fail(errc::data_invalid, images_path + ": images of " + std::to_string((*idims)[1])
                                      + "x" + std::to_string((*idims)[2]) + ", expected 28x28");
  if ((*idims)[0] != (*ldims)[0])
    return fail(errc::data_invalid, images_path + " holds " + std::to_string((*idims)[0])
                                      + " images but " + labels_path + " "
                                      + std::to_string((*ldims)[0]) + " labels");
  size_t n = (*idims)[0];
  if (limit > 0 && limit < n)
    n = limit;
  labelled_images out;
  out.images.resize(static_cast<Eigen::Index>(n), fashion_mnist_pixels);
  out.labels.assign(lab, lab + n);
  for (size_t i = 0; i < n; ++i) {
    if (out.labels[i] > 9)
      return fail(errc::data_invalid, labels_path + ": byte " + std::to_string(8 + i)
                                        + ": label " + std::to_string(out.labels[i])
                                        + ", expected 0..9");
    for (int p = 0; p < fashion_mnist_pixels; ++p)
      out.images(static_cast<Eigen::Index>(i), p) = pix[i * fashion_mnist_pixels + p] / 255.0f;
  }
  return out;
}

} // namespace eoe::experts
