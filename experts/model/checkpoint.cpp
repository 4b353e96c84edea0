#include "experts/model/checkpoint.hpp"

#include "experts/base/crc32.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace eoe::experts {

static_assert(std::endian::native == std::endian::little,
              "checkpoints are little-endian; this host is not");

namespace {

constexpr char magic[8] = {'E', 'O', 'E', 'C', 'K', 'P', 'T', '\0'};
constexpr char end_mark[8] = {'E', 'O', 'E', 'E', 'N', 'D', '\0', '\0'};

template <class T>
void put(std::vector<char>& out, T v) {
  const auto at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void put_bytes(std::vector<char>& out, const void* p, size_t n) {
  auto c = static_cast<const char*>(p);
  out.insert(out.end(), c, c + n);
}

std::uint16_t to_bf16(float f) noexcept {
  auto bits = std::bit_cast<std::uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<std::uint16_t>((bits >> 16) | 0x40u); // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);                      // round to nearest even
  return static_cast<std::uint16_t>(bits >> 16);
}

float from_bf16(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

size_t dtype_size(std::uint8_t dtype) {
  return dtype == static_cast<std::uint8_t>(storage_dtype::f32) ? 4 : 2;
}

/// Reads the file's bytes front to back; every read names what it wanted when it runs out.
class reader {
public:
  reader(const std::vector<char>& bytes, const std::string& source)
    : bytes_(bytes), source_(source) {
    // nop
  }

  size_t offset() const noexcept {
    return at_;
  }

  size_t size() const noexcept {
    return bytes_.size();
  }

  const char* data(size_t at) const noexcept {
    return bytes_.data() + at;
  }

  /// Claims the next n bytes for `what`, or says where the file ends.
  expected<const char*> take(size_t n, const std::string& what) {
    if (n > bytes_.size() - at_) {
      std::ostringstream os;
      os << source_ << ": truncated: " << what << " needs bytes [" << at_ << ", " << at_ + n
         << ") but the file ends at byte " << bytes_.size();
      return fail(errc::checkpoint_format, os.str());
    }
    const char* p = bytes_.data() + at_;
    at_ += n;
    return p;
  }

  template <class T>
  expected<T> get(const std::string& what) {
    auto p = take(sizeof(T), what);
    if (!p)
      return eoe::unexpected(p.error());
    T v;
    std::memcpy(&v, *p, sizeof(T));
    return v;
  }

private:
  const std::vector<char>& bytes_;
  const std::string& source_;
  size_t at_ = 0;
};

#define EOE_TRY(var, expr)                                                                      \
  auto var##_r = (expr);                                                                        \
  if (!var##_r)                                                                                 \
    return eoe::unexpected(var##_r.error());                                                    \
  auto var = *var##_r

/// The first line where the canonical TOML of two configs differs.
std::string config_difference(const model_config& got, const model_config& want) {
  std::istringstream a{to_toml(got)}, b{to_toml(want)};
  std::string la, lb;
  for (int line = 1;; ++line) {
    bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
    if (!ha && !hb)
      return "they differ";
    if (!ha || !hb || la != lb) {
      return "line " + std::to_string(line) + " of the canonical config is '"
             + (ha ? la : "<end>") + "' in the checkpoint but '" + (hb ? lb : "<end>")
             + "' expected";
    }
  }
}

/// Bytes as hex and, where printable, as text: 58 4F 45 00 ("XOE\0").
std::string bytes_shown(const char* p, size_t n) {
  std::string hex, text;
  char buf[8];
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    std::snprintf(buf, sizeof buf, "%s%02X", i ? " " : "", c);
    hex += buf;
    if (c == 0)
      text += "\\0";
    else if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      text += buf;
    } else
      text += static_cast<char>(c);
  }
  return hex + " (\"" + text + "\")";
}

/// What a file's first bytes are against the magic number's.
std::string magic_mismatch(const std::vector<char>& bytes) {
  const auto n = std::min(bytes.size(), sizeof magic);
  return "bytes [0, " + std::to_string(n) + ") are " + bytes_shown(bytes.data(), n)
         + ", a checkpoint starts with " + bytes_shown(magic, sizeof magic);
}

/// A tensor as read from the file, before it is checked against the config.
struct raw_tensor {
  std::uint8_t dtype = 0;
  std::uint64_t rows = 0, cols = 0;
  size_t data_at = 0; ///< offset of the first data byte
  size_t begin = 0, end = 0;
};

} // namespace

std::vector<char> checkpoint_bytes(const model& m, storage_dtype dtype) {
  std::vector<char> out;
  put_bytes(out, magic, sizeof magic);
  put<std::uint32_t>(out, checkpoint_version);
  const auto config = to_toml(m.config);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(config.size()));
  put<std::uint32_t>(out, crc32(config.data(), config.size()));
  put_bytes(out, config.data(), config.size());
  std::uint32_t count = 0;
  for_each_parameter(m, [&](const std::string&, const matrix&) { ++count; });
  put<std::uint32_t>(out, count);
  for_each_parameter(m, [&](const std::string& name, const matrix& t) {
    const auto start = out.size();
    put<std::uint16_t>(out, static_cast<std::uint16_t>(name.size()));
    put_bytes(out, name.data(), name.size());
    put<std::uint8_t>(out, static_cast<std::uint8_t>(dtype));
    put<std::uint8_t>(out, 2);
    put<std::uint64_t>(out, static_cast<std::uint64_t>(t.rows()));
    put<std::uint64_t>(out, static_cast<std::uint64_t>(t.cols()));
    const auto crc_at = out.size();
    put<std::uint32_t>(out, 0);
    if (dtype == storage_dtype::f32) {
      put_bytes(out, t.data(), t.size() * sizeof(float));
    } else {
      for (Eigen::Index i = 0; i < t.size(); ++i)
        put<std::uint16_t>(out, to_bf16(t.data()[i]));
    }
    // The CRC covers the header before it and the data after it.
    std::uint32_t crc = crc32(out.data() + start, crc_at - start);
    crc = crc32(out.data() + crc_at + 4, out.size() - crc_at - 4, crc);
    std::memcpy(out.data() + crc_at, &crc, 4);
  });
  put_bytes(out, end_mark, sizeof end_mark);
  return out;
}

expected<void> save_checkpoint(const model& m, const std::string& path, storage_dtype dtype) {
  const auto bytes = checkpoint_bytes(m, dtype);
  const auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
    if (!out)
      return fail(errc::io, tmp + ": cannot open for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return fail(errc::io, tmp + ": write failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fail(errc::io, path + ": cannot move the written checkpoint into place");
  }
  return {};
}

expected<model> parse_checkpoint(const std::vector<char>& bytes, const std::string& source,
                                 const model_config* expected_config) {
  reader in{bytes, source};
  // A file that does not start as a checkpoint does is something else, however short: only
  // the start of the magic number is a cut checkpoint.
  if (!bytes.empty() && std::memcmp(bytes.data(), magic, std::min(bytes.size(), sizeof magic)) != 0)
    return fail(errc::checkpoint_format, source + ": not an eoe checkpoint (bad magic: "
                                           + magic_mismatch(bytes) + ")");
  EOE_TRY(head, in.take(sizeof magic, "the magic number"));
  (void) head;
  EOE_TRY(version, in.get<std::uint32_t>("the format version"));
  if (version != checkpoint_version)
    return fail(errc::checkpoint_format,
                source + ": bytes [8, 12): format version " + std::to_string(version)
                  + ", this build reads version " + std::to_string(checkpoint_version));
  EOE_TRY(config_len, in.get<std::uint32_t>("the config length"));
  EOE_TRY(config_crc, in.get<std::uint32_t>("the config checksum"));
  const auto config_at = in.offset();
  EOE_TRY(config_text, in.take(config_len, "the embedded config"));
  const auto range = [](size_t b, size_t e) {
    return "bytes [" + std::to_string(b) + ", " + std::to_string(e) + ")";
  };
  if (crc32(config_text, config_len) != config_crc)
    return fail(errc::checkpoint_corrupt, source + ": the embedded config ("
                                            + range(config_at, config_at + config_len)
                                            + ") fails its checksum");
  auto config = parse_model_config(std::string_view{config_text, config_len},
                                   source + " (embedded config)");
  if (!config)
    return fail(errc::checkpoint_format, config.error().message);
  if (expected_config && *config != *expected_config)
    return fail(errc::checkpoint_mismatch,
                source + ": its model config differs from the one expected: "
                  + config_difference(*config, *expected_config));

  EOE_TRY(count, in.get<std::uint32_t>("the tensor count"));
  // Every expert has a tensor of its own at least: a config of more experts than the file has
  // tensors cannot match, and its list of shapes (below) could take gigabytes for a few
  // kilobytes of TOML (1024 layers of 4096 experts).
  std::uint64_t experts = 0;
  for (const auto& l : config->layers)
    experts += static_cast<std::uint64_t>(std::max(l.experts, 0));
  if (experts > count)
    return fail(errc::checkpoint_mismatch,
                source + ": bytes [" + std::to_string(in.offset() - 4) + ", "
                  + std::to_string(in.offset()) + "): " + std::to_string(count)
                  + " tensors, but its config has " + std::to_string(experts)
                  + " experts, each with tensors of its own");
  std::map<std::string, raw_tensor> tensors;
  for (std::uint32_t i = 0; i < count; ++i) {
    raw_tensor t;
    t.begin = in.offset();
    const auto which = "tensor #" + std::to_string(i);
    EOE_TRY(name_len, in.get<std::uint16_t>(which + " name length"));
    EOE_TRY(name_p, in.take(name_len, which + " name"));
    std::string name{name_p, name_len};
    // Every name a model has is printable ASCII; any other byte is damage, and the name is
    // quoted in every error below.
    for (size_t k = 0; k < name.size(); ++k) {
      const auto c = static_cast<unsigned char>(name[k]);
      if (c < 0x21 || c > 0x7e) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", c);
        const auto at = in.offset() - name.size();
        return fail(errc::checkpoint_format,
                    source + ": " + which + " name (" + range(at, in.offset()) + "): byte "
                      + std::to_string(at + k) + " is " + hex
                      + "; a tensor name is printable ASCII");
      }
    }
    const auto label = which + " '" + name + "'";
    EOE_TRY(dtype, in.get<std::uint8_t>(label + " dtype"));
    EOE_TRY(rank, in.get<std::uint8_t>(label + " rank"));
    EOE_TRY(rows, in.get<std::uint64_t>(label + " rows"));
    EOE_TRY(cols, in.get<std::uint64_t>(label + " cols"));
    EOE_TRY(crc, in.get<std::uint32_t>(label + " checksum"));
    if (dtype != 1 && dtype != 2)
      return fail(errc::checkpoint_format, source + ": " + label + " (" + range(t.begin, in.offset())
                                             + "): unknown dtype " + std::to_string(dtype)
                                             + ", expected 1 (f32) or 2 (bf16)");
    if (rank != 2)
      return fail(errc::checkpoint_format, source + ": " + label + " (" + range(t.begin, in.offset())
                                             + "): rank " + std::to_string(rank) + ", expected 2");
    const std::uint64_t limit = bytes.size();
    if (rows > limit || cols > limit || (rows && cols > limit / rows))
      return fail(errc::checkpoint_format, source + ": " + label + " (" + range(t.begin, in.offset())
                                             + "): shape (" + std::to_string(rows) + ", "
                                             + std::to_string(cols) + ") is larger than the file");
    const auto header_end = in.offset();
    EOE_TRY(data, in.take(rows * cols * dtype_size(dtype), label + " data"));
    (void) data;
    std::uint32_t actual = crc32(bytes.data() + t.begin, header_end - 4 - t.begin);
    actual = crc32(bytes.data() + header_end, in.offset() - header_end, actual);
    if (actual != crc) {
      std::ostringstream os;
      os << source << ": " << label << " (" << range(t.begin, in.offset())
         << ") is corrupt: checksum 0x" << std::hex << actual << " != stored 0x" << crc;
      return fail(errc::checkpoint_corrupt, os.str());
    }
    t.dtype = dtype;
    t.rows = rows;
    t.cols = cols;
    t.data_at = header_end;
    t.end = in.offset();
    if (!tensors.emplace(name, t).second)
      return fail(errc::checkpoint_format, source + ": " + label + " (" + range(t.begin, t.end)
                                             + "): a second tensor of that name");
  }
  EOE_TRY(tail, in.take(sizeof end_mark, "the end mark"));
  if (std::memcmp(tail, end_mark, sizeof end_mark) != 0)
    return fail(errc::checkpoint_format, source + ": " + range(in.offset() - 8, in.offset())
                                           + ": bad end mark after the last tensor");
  if (in.offset() != in.size())
    return fail(errc::checkpoint_format, source + ": " + range(in.offset(), in.size())
                                           + ": unexpected bytes after the end mark");

  // Every tensor the config needs, with its shape, and nothing else.
  for (const auto& want : parameter_shapes(*config)) {
    auto it = tensors.find(want.name);
    if (it == tensors.end())
      return fail(errc::checkpoint_mismatch, source + ": tensor '" + want.name
                                               + "' is missing; the config needs it with shape ("
                                               + std::to_string(want.rows) + ", "
                                               + std::to_string(want.cols) + ")");
    const auto& t = it->second;
    if (t.rows != static_cast<std::uint64_t>(want.rows)
        || t.cols != static_cast<std::uint64_t>(want.cols))
      return fail(errc::checkpoint_mismatch,
                  source + ": tensor '" + want.name + "' (" + range(t.begin, t.end) + ") has shape ("
                    + std::to_string(t.rows) + ", " + std::to_string(t.cols)
                    + "), the config needs (" + std::to_string(want.rows) + ", "
                    + std::to_string(want.cols) + ")");
  }
  if (tensors.size() != parameter_shapes(*config).size()) {
    const auto shapes = parameter_shapes(*config);
    for (const auto& [name, t] : tensors)
      if (std::none_of(shapes.begin(), shapes.end(),
                       [&key = name](auto& s) { return s.name == key; }))
        return fail(errc::checkpoint_mismatch, source + ": tensor '" + name + "' ("
                                                 + range(t.begin, t.end)
                                                 + ") is not part of the model's config");
  }

  // Only now that everything checked out is the model filled.
  model m = zero_model(*config);
  for_each_parameter(m, [&](const std::string& name, matrix& dst) {
    const auto& t = tensors.at(name);
    const char* p = bytes.data() + t.data_at;
    if (t.dtype == static_cast<std::uint8_t>(storage_dtype::f32)) {
      std::memcpy(dst.data(), p, dst.size() * sizeof(float));
    } else {
      for (Eigen::Index i = 0; i < dst.size(); ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst.data()[i] = from_bf16(h);
      }
    }
  });
  return m;
}

expected<model> load_checkpoint(const std::string& path, const model_config* expected_config) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(errc::io, path + ": cannot open the checkpoint");
  std::vector<char> bytes{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  if (in.bad())
    return fail(errc::io, path + ": read error");
  return parse_checkpoint(bytes, path, expected_config);
}

} // namespace eoe::experts
