// The Fashion-MNIST reader: the real files, and malformed IDX bytes.

#include "experts/data/fashion_mnist.hpp"

#include <catch2/catch.hpp>

using namespace eoe::experts;

TEST_CASE("the Debian Fashion-MNIST test split loads", "[data]") {
  auto d = load_fashion_mnist("test");
  REQUIRE(d.has_value());
  CHECK(d->images.rows() == 10000);
  CHECK(d->images.cols() == 784);
  CHECK(d->labels.size() == 10000);
  CHECK(d->images.minCoeff() == 0.0f);
  CHECK(d->images.maxCoeff() == 1.0f);
  std::vector<int> per_class(10, 0);
  for (auto l : d->labels)
    ++per_class[l];
  for (int c = 0; c < 10; ++c)
    CHECK(per_class[c] == 1000); // the test split is balanced
  CHECK(d->labels[0] == 9);      // the first test image is an ankle boot
  auto few = load_fashion_mnist("train", 5);
  REQUIRE(few.has_value());
  CHECK(few->images.rows() == 5);
}

TEST_CASE("missing data and bad splits say what to do", "[data]") {
  auto d = load_fashion_mnist("test", 0, "/nonexistent");
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().message
        == "/nonexistent/t10k-images-idx3-ubyte.gz: not found (Fashion-MNIST comes from Debian: "
           "apt-get install dataset-fashion-mnist)");
  auto s = load_fashion_mnist("validation");
  REQUIRE_FALSE(s.has_value());
  CHECK(s.error().message == "fashion-mnist split 'validation': expected \"train\" or \"test\"");
}

TEST_CASE("malformed IDX bytes are named by byte", "[data]") {
  const unsigned char* data = nullptr;
  std::vector<unsigned char> short_magic{0, 0};
  CHECK(parse_idx(short_magic, 1, "x", &data).error().message
        == "x: 2 bytes, too short for the IDX magic (bytes [0, 4))");
  std::vector<unsigned char> wrong{0, 0, 0x0d, 1, 0, 0, 0, 1, 7};
  CHECK(parse_idx(wrong, 1, "x", &data).error().message
        == "x: bytes [0, 4): IDX magic 00 00 08 01 (unsigned bytes, rank 1) expected, got 0 0 d 1");
  std::vector<unsigned char> short_data{0, 0, 8, 1, 0, 0, 0, 3, 7, 7};
  CHECK(parse_idx(short_data, 1, "x", &data).error().message
        == "x: the dimensions promise 3 data bytes after byte 8, the file has 2");
  std::vector<unsigned char> ok{0, 0, 8, 1, 0, 0, 0, 2, 4, 5};
  auto dims = parse_idx(ok, 1, "x", &data);
  REQUIRE(dims.has_value());
  CHECK((*dims)[0] == 2);
  CHECK(data[1] == 5);
}
