// Checkpoints: round trip, and every way a file can be wrong is rejected with the tensor or
// byte range at fault, and no model.

#include "experts/model/checkpoint.hpp"
#include "experts/base/crc32.hpp"
#include "experts/model/forward.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace eoe;
using namespace eoe::experts;

namespace {

std::string error_of(const std::vector<char>& bytes, errc want,
                     const model_config* expect = nullptr) {
  auto m = parse_checkpoint(bytes, "m.ckpt", expect);
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().code == want);
  return m.error().message;
}

/// Offset of a tensor's record in the file: found by its name bytes, minus the u16 length.
size_t record_of(const std::vector<char>& bytes, const std::string& name) {
  std::string hay(bytes.begin(), bytes.end());
  auto at = hay.find(name);
  REQUIRE(at != std::string::npos);
  return at - 2;
}

model_config small_config() {
  auto c = parse_model_config(R"(
model = { name = "small", input_dim = 6, dim = 4, classes = 3, seed = 5 }
layer = [
  { kind = "eoe", experts = 3, hidden = 5, rank = 2, k = 2 },
  { kind = "eoe", experts = 2, hidden = 3, rank = 2, mode = "threshold", tau = [0.5, 0.25], affinity = true },
  { kind = "router", experts = 2, hidden = 3, k = 1 },
]
)",
                              "small");
  REQUIRE(c.has_value());
  return *c;
}

} // namespace

TEST_CASE("a checkpoint round-trips every tensor bit for bit", "[checkpoint]") {
  auto m = init_model(small_config());
  m.layers[1].affinity(1, 0) = 0.25f;
  const test::scratch_dir file{std::filesystem::temp_directory_path()
                               / ("eoe_test_roundtrip_" + std::to_string(::getpid()) + ".ckpt")};
  const auto path = file.path.string();
  REQUIRE(save_checkpoint(m, path).has_value());
  auto back = load_checkpoint(path);
  REQUIRE(back.has_value());
  CHECK(back->config == m.config);
  size_t n = 0;
  for_each_parameter(*back, [&](const std::string& name, const matrix& t) {
    for_each_parameter(m, [&](const std::string& n2, const matrix& src) {
      if (n2 == name) {
        INFO(name);
        CHECK(t == src);
        ++n;
      }
    });
  });
  CHECK(n == parameter_shapes(m.config).size());
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("bf16 storage is half the bytes and within bf16 precision", "[checkpoint]") {
  auto m = init_model(small_config());
  auto f32 = checkpoint_bytes(m, storage_dtype::f32);
  auto bf16 = checkpoint_bytes(m, storage_dtype::bf16);
  CHECK(bf16.size() < f32.size());
  auto back = parse_checkpoint(bf16, "b");
  REQUIRE(back.has_value());
  for_each_parameter(*back, [&](const std::string& name, const matrix& t) {
    for_each_parameter(m, [&](const std::string& n2, const matrix& src) {
      if (n2 == name)
        for (Eigen::Index i = 0; i < t.size(); ++i)
          CHECK(std::abs(t.data()[i] - src.data()[i]) <= std::abs(src.data()[i]) / 256.0f);
    });
  });
}

TEST_CASE("a checkpoint cut anywhere is rejected as truncated, naming what was cut",
          "[checkpoint]") {
  auto bytes = checkpoint_bytes(init_model(small_config()));
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::vector<char> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    auto m = parse_checkpoint(cut, "m.ckpt");
    REQUIRE_FALSE(m.has_value());
    INFO("length " << len << ": " << m.error().message);
    CHECK(m.error().code == errc::checkpoint_format);
    CHECK_THAT(m.error().message,
               Catch::Contains("truncated") && Catch::Contains("file ends at byte "
                                                               + std::to_string(len)));
  }
  // One precise case: cut inside the data of layer.0.expert.1.w2.
  const auto at = record_of(bytes, "layer.0.expert.1.w2");
  const auto data_at = at + 2 + 19 + 1 + 1 + 8 + 8 + 4;
  std::vector<char> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(data_at + 7));
  CHECK(error_of(cut, errc::checkpoint_format)
        == "m.ckpt: truncated: tensor #10 'layer.0.expert.1.w2' data needs bytes ["
             + std::to_string(data_at) + ", " + std::to_string(data_at + 5 * 4 * 4)
             + ") but the file ends at byte " + std::to_string(data_at + 7));
}

TEST_CASE("a flipped byte anywhere in a tensor is caught by its checksum", "[checkpoint]") {
  auto bytes = checkpoint_bytes(init_model(small_config()));
  const auto at = record_of(bytes, "layer.1.affinity");
  const auto end = record_of(bytes, "layer.1.tau");
  for (size_t i = at + 2 + 16 + 2 + 16 + 4; i < end; ++i) { // the data bytes
    auto bad = bytes;
    bad[i] ^= 0x10;
    CHECK_THAT(error_of(bad, errc::checkpoint_corrupt),
               Catch::StartsWith("m.ckpt: tensor #") && Catch::Contains("'layer.1.affinity' (bytes ["
                                                                        + std::to_string(at) + ", "
                                                                        + std::to_string(end)
                                                                        + ")) is corrupt: checksum"));
  }
  // A flipped dimension byte is caught too (the checksum covers the header).
  auto bad = bytes;
  bad[at + 2 + 16 + 2] ^= 0x01; // rows of layer.1.affinity: 2 -> 3
  CHECK_THAT(error_of(bad, errc::checkpoint_corrupt), Catch::Contains("'layer.1.affinity'"));
}

TEST_CASE("header damage is named by its byte range", "[checkpoint]") {
  auto bytes = checkpoint_bytes(init_model(small_config()));
  auto bad = bytes;
  bad[0] = 'X';
  CHECK(error_of(bad, errc::checkpoint_format)
        == "m.ckpt: not an eoe checkpoint (bad magic: bytes [0, 8) are 58 4F 45 43 4B 50 54 00 "
           "(\"XOECKPT\\0\"), a checkpoint starts with 45 4F 45 43 4B 50 54 00 (\"EOECKPT\\0\"))");
  // Bytes that are no checkpoint at all, however short: shown, escaped, never raw.
  CHECK(error_of({'#', ' ', '\xFF'}, errc::checkpoint_format)
        == "m.ckpt: not an eoe checkpoint (bad magic: bytes [0, 3) are 23 20 FF (\"# \\xFF\"), a "
           "checkpoint starts with 45 4F 45 43 4B 50 54 00 (\"EOECKPT\\0\"))");
  // The start of the magic number alone is a checkpoint cut short.
  CHECK(error_of({'E', 'O', 'E'}, errc::checkpoint_format)
        == "m.ckpt: truncated: the magic number needs bytes [0, 8) but the file ends at byte 3");
  bad = bytes;
  bad[8] = 9;
  CHECK(error_of(bad, errc::checkpoint_format)
        == "m.ckpt: bytes [8, 12): format version 9, this build reads version 1");
  bad = bytes;
  bad[20 + 10] ^= 0x20; // inside the embedded config
  CHECK_THAT(error_of(bad, errc::checkpoint_corrupt),
             Catch::StartsWith("m.ckpt: the embedded config (bytes [20, ")
               && Catch::EndsWith(") fails its checksum"));
  bad = bytes;
  bad.push_back('!');
  CHECK(error_of(bad, errc::checkpoint_format)
        == "m.ckpt: bytes [" + std::to_string(bytes.size()) + ", "
             + std::to_string(bytes.size() + 1) + "): unexpected bytes after the end mark");
  bad = bytes;
  bad[bytes.size() - 3] = 'x';
  CHECK_THAT(error_of(bad, errc::checkpoint_format), Catch::Contains("bad end mark"));
}

namespace {

/// A checkpoint of this config text (its checksum right) and these tensor records.
std::vector<char> file_of(const std::string& config, std::uint32_t count,
                          const std::vector<char>& records = {}) {
  std::vector<char> out{'E', 'O', 'E', 'C', 'K', 'P', 'T', '\0'};
  const auto put32 = [&](std::uint32_t v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    out.insert(out.end(), p, p + 4);
  };
  put32(checkpoint_version);
  put32(static_cast<std::uint32_t>(config.size()));
  put32(crc32(config.data(), config.size()));
  out.insert(out.end(), config.begin(), config.end());
  put32(count);
  out.insert(out.end(), records.begin(), records.end());
  for (char c : std::string("EOEEND\0\0", 8))
    out.push_back(c);
  return out;
}

} // namespace

TEST_CASE("bytes a checkpoint should not hold: the byte named, nothing quoted raw",
          "[checkpoint]") {
  // The embedded config is TOML: a byte that is not UTF-8 is named by line and column.
  CHECK(error_of(file_of("[model]\nname = \"a\xff\"\ndim = 4\n", 0), errc::checkpoint_format)
        == "m.ckpt (embedded config):2:10: byte 0xFF is not UTF-8 (a TOML file is UTF-8 text)");
  CHECK(error_of(file_of("\"k\\u001b\" = 1\n[model]\ndim = 4\n", 0), errc::checkpoint_format)
        == "m.ckpt (embedded config):1:1: layer: missing; expected at least one [[layer]] table\n"
           "m.ckpt (embedded config):1:1: k\\x1B: unknown key at the top level (expected one of: "
           "model, layer, train)");
  // A tensor's name is printable ASCII: a byte that is not (here 0xFF, then NUL) is named by
  // its offset in the file, before the name is quoted anywhere.
  const auto bytes = checkpoint_bytes(init_model(small_config()));
  const auto at = record_of(bytes, "embed.w") + 2; // the name's first byte
  for (char c : {'\xff', '\0'}) {
    auto bad = bytes;
    bad[at + 3] = c;
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(c));
    CHECK(error_of(bad, errc::checkpoint_format)
          == "m.ckpt: tensor #0 name (bytes [" + std::to_string(at) + ", " + std::to_string(at + 7)
               + ")): byte " + std::to_string(at + 3) + " is " + hex
               + "; a tensor name is printable ASCII");
  }
  // A config of more experts than the file has tensors is refused before its shapes are listed
  // (1024 layers of 4096 experts: 4 million experts, gigabytes of names, from 50 KB of TOML).
  std::string config = "[model]\ndim = 4\n";
  for (int l = 0; l < 1024; ++l)
    config += "[[layer]]\nkind = \"hash\"\nexperts = 4096\nhidden = 1\nk = 1\n";
  const auto huge = file_of(config, 3);
  CHECK(error_of(huge, errc::checkpoint_mismatch)
        == "m.ckpt: bytes [" + std::to_string(20 + config.size()) + ", "
             + std::to_string(24 + config.size())
             + "): 3 tensors, but its config has 4194304 experts, each with tensors of its own");
}

TEST_CASE("a model named with a character past U+00A0 saves a checkpoint that loads", "[checkpoint]") {
  auto c = small_config();
  c.name = "caf\xc3\xa9";
  const auto m = init_model(c);
  auto back = parse_checkpoint(checkpoint_bytes(m), "m.ckpt");
  REQUIRE(back.has_value());
  CHECK(back->config == c);
}

TEST_CASE("a checkpoint of another config, or with tensors missing, is a mismatch",
          "[checkpoint]") {
  auto m = init_model(small_config());
  auto bytes = checkpoint_bytes(m);
  auto other = small_config();
  other.layers[0].hidden = 6;
  CHECK(error_of(bytes, errc::checkpoint_mismatch, &other)
        == "m.ckpt: its model config differs from the one expected: line 11 of the canonical "
           "config is 'hidden = 5' in the checkpoint but 'hidden = 6' expected");

  // Swap the embedded config for one whose layer 0 is wider: every tensor of layer 0 has the
  // wrong shape now; the first one is named.
  auto wide = m;
  wide.config.layers[0].hidden = 6;
  auto wide_bytes = checkpoint_bytes(m);
  {
    // Rebuild the file with the other config text but the same tensors.
    const auto text = to_toml(wide.config);
    std::vector<char> rebuilt(wide_bytes.begin(), wide_bytes.begin() + 12);
    std::uint32_t len = static_cast<std::uint32_t>(text.size()), crc = crc32(text.data(), text.size());
    rebuilt.insert(rebuilt.end(), reinterpret_cast<char*>(&len), reinterpret_cast<char*>(&len) + 4);
    rebuilt.insert(rebuilt.end(), reinterpret_cast<char*>(&crc), reinterpret_cast<char*>(&crc) + 4);
    rebuilt.insert(rebuilt.end(), text.begin(), text.end());
    std::uint32_t old_len;
    std::memcpy(&old_len, wide_bytes.data() + 12, 4);
    rebuilt.insert(rebuilt.end(), wide_bytes.begin() + 20 + old_len, wide_bytes.end());
    CHECK_THAT(error_of(rebuilt, errc::checkpoint_mismatch),
               Catch::StartsWith("m.ckpt: tensor 'layer.0.expert.0.w1' (bytes [")
                 && Catch::EndsWith("has shape (2, 5), the config needs (2, 6)"));
  }
  // A model without the head written under a config that has one: head.w is missing.
  auto headless = m;
  headless.config.classes = 0;
  auto hb = checkpoint_bytes(headless);
  {
    const auto text = to_toml(m.config);
    std::uint32_t old_len;
    std::memcpy(&old_len, hb.data() + 12, 4);
    std::vector<char> rebuilt(hb.begin(), hb.begin() + 12);
    std::uint32_t len = static_cast<std::uint32_t>(text.size()), crc = crc32(text.data(), text.size());
    rebuilt.insert(rebuilt.end(), reinterpret_cast<char*>(&len), reinterpret_cast<char*>(&len) + 4);
    rebuilt.insert(rebuilt.end(), reinterpret_cast<char*>(&crc), reinterpret_cast<char*>(&crc) + 4);
    rebuilt.insert(rebuilt.end(), text.begin(), text.end());
    rebuilt.insert(rebuilt.end(), hb.begin() + 20 + old_len, hb.end());
    CHECK(error_of(rebuilt, errc::checkpoint_mismatch)
          == "m.ckpt: tensor 'head.w' is missing; the config needs it with shape (4, 3)");
  }
}

TEST_CASE("a failed load leaves the caller's model as it was", "[checkpoint]") {
  const test::scratch_dir file{std::filesystem::temp_directory_path()
                               / ("eoe_test_half_" + std::to_string(::getpid()) + ".ckpt")};
  const auto path = file.path.string();
  auto good = init_model(small_config());
  REQUIRE(save_checkpoint(good, path).has_value());
  auto bytes = checkpoint_bytes(good);
  bytes[bytes.size() - 20] ^= 0x40; // the last tensor's data
  {
    std::ofstream out{path, std::ios::binary | std::ios::trunc};
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  model current = good;
  if (auto m = load_checkpoint(path))
    current = std::move(*m);
  else
    CHECK_THAT(m.error().message, Catch::Contains("'head.b'") && Catch::Contains("corrupt"));
  CHECK(current.head_b == good.head_b);
  std::filesystem::remove(path);
  auto none = load_checkpoint(path);
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().code == errc::io);
}
