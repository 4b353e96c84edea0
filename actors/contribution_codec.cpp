#include "actors/contribution_codec.hpp"

#include <bit>
#include <cstring>
#include <stdexcept>

namespace eoe::actors {

static_assert(std::endian::native == std::endian::little,
              "the data plane's frames are little-endian, as is every supported machine");

namespace {

constexpr char magic[4] = {'E', 'O', 'E', 'C'};
constexpr std::uint8_t version = 4;
constexpr const char* payload_names[5] = {"rows", "scores", "y", "stream", "ids"};

class writer {
public:
  template <class T>
  void value(T x) {
    out_.append(reinterpret_cast<const char*>(&x), sizeof x);
  }

  void bytes(const std::string& s) {
    value<std::uint64_t>(s.size());
    out_ += s;
  }

  std::string take() {
    return std::move(out_);
  }

private:
  std::string out_;
};

class reader {
public:
  explicit reader(std::string_view in) : in_(in) {}

  template <class T>
  T value(const char* field) {
    need(sizeof(T), field);
    T x;
    std::memcpy(&x, in_.data() + at_, sizeof x);
    at_ += sizeof x;
    return x;
  }

  std::string bytes(const char* field) {
    return std::string{take(value<std::uint64_t>(field), field)};
  }

  /// The next n bytes.
  std::string_view take(std::uint64_t n, const char* field) {
    need(n, field);
    const auto out = in_.substr(at_, n);
    at_ += n;
    return out;
  }

  void need(std::uint64_t n, const char* field) const {
    if (n > in_.size() - at_)
      throw std::invalid_argument(std::string("contribution frame: field ") + field + " at byte "
                                  + std::to_string(at_) + " needs " + std::to_string(n)
                                  + " bytes, " + std::to_string(in_.size() - at_) + " are left");
  }

  size_t at() const {
    return at_;
  }

private:
  std::string_view in_;
  size_t at_ = 0;
};

/// Sizes a string without writing it: the bytes are read into it next. (The size is returned
/// from the capture: libstdc++ 12 passes the new capacity, not n, for sizes 16 to 30.)
void size_for_reading(std::string& s, std::uint64_t n) {
  const auto size = static_cast<size_t>(n);
  s.resize_and_overwrite(size, [size](char*, size_t) { return size; });
}

} // namespace

const char* payload_name(std::size_t i) {
  return i < 5 ? payload_names[i] : "?";
}

std::array<std::string*, 5> payloads(contribution& c) {
  return {&c.rows, &c.scores, &c.y.bytes, &c.stream.bytes, &c.ids};
}

std::array<const std::string*, 5> payloads(const contribution& c) {
  return {&c.rows, &c.scores, &c.y.bytes, &c.stream.bytes, &c.ids};
}

std::string encode_header(const contribution& c) {
  writer w;
  for (char m : magic)
    w.value(m);
  w.value(version);
  w.value(c.request);
  w.value(c.epoch);
  w.value(c.to_layer);
  w.value(c.sender);
  w.bytes(c.sender_node);
  w.value(c.deadline_ms);
  w.value(c.y.rows);
  w.value(c.y.cols);
  w.value(c.stream.rows);
  w.value(c.stream.cols);
  w.value(c.trace);
  w.value(c.msg);
  w.value(static_cast<std::uint8_t>(c.kind));
  w.value<std::uint8_t>(c.record ? 1 : 0);
  for (auto* p : payloads(c))
    w.value<std::uint64_t>(p->size());
  return w.take();
}

namespace {

/// The header's fields; `lengths` gets the payload lengths, `end` the header's size.
contribution read_header(reader& r, std::array<std::uint64_t, 5>& lengths) {
  for (char m : magic)
    if (r.value<char>("magic") != m)
      throw std::invalid_argument("contribution frame: bad magic at byte "
                                  + std::to_string(r.at() - 1) + " (expected \"EOEC\")");
  if (const auto v = r.value<std::uint8_t>("version"); v != version)
    throw std::invalid_argument("contribution frame: version " + std::to_string(v)
                                + " at byte 4, this build reads version "
                                + std::to_string(version));
  contribution c;
  c.request = r.value<std::uint64_t>("request");
  c.epoch = r.value<std::uint64_t>("epoch");
  c.to_layer = r.value<std::uint32_t>("to_layer");
  c.sender = r.value<std::uint32_t>("sender");
  c.sender_node = r.bytes("sender_node");
  c.deadline_ms = r.value<std::uint32_t>("deadline_ms");
  c.y.rows = r.value<std::uint32_t>("y.rows");
  c.y.cols = r.value<std::uint32_t>("y.cols");
  c.stream.rows = r.value<std::uint32_t>("stream.rows");
  c.stream.cols = r.value<std::uint32_t>("stream.cols");
  c.trace = r.value<std::uint64_t>("trace");
  c.msg = r.value<std::uint64_t>("msg");
  const auto kind_at = r.at();
  const auto kind = r.value<std::uint8_t>("kind");
  if (kind > 1)
    throw std::invalid_argument("contribution frame: kind " + std::to_string(kind)
                                + " at byte " + std::to_string(kind_at)
                                + ", expected 0 (outputs) or 1 (ranking scores)");
  c.kind = static_cast<contribution_kind>(kind);
  const auto record_at = r.at();
  const auto record = r.value<std::uint8_t>("record");
  if (record > 1)
    throw std::invalid_argument("contribution frame: record " + std::to_string(record)
                                + " at byte " + std::to_string(record_at)
                                + ", expected 0 (no decisions wanted) or 1");
  c.record = record == 1;
  std::uint64_t total = 0;
  for (size_t i = 0; i < 5; ++i) {
    const auto at = r.at();
    lengths[i] = r.value<std::uint64_t>(payload_names[i]);
    total += lengths[i];
    if (lengths[i] > max_frame_payload || total > max_frame_payload)
      throw std::invalid_argument(std::string("contribution frame: length of ")
                                  + payload_names[i] + " at byte " + std::to_string(at) + " ("
                                  + std::to_string(lengths[i]) + ") takes the payloads past "
                                  + std::to_string(max_frame_payload) + " bytes");
  }
  const auto check = [&](const char* field, const wire_tensor& t, std::uint64_t bytes) {
    // rows * cols fits 64 bits, rows * cols * 4 may not: (2^31, 2^31) times 4 wraps to 0, and
    // a tensor of 2^62 floats would pass for an empty one.
    if (bytes % 4 != 0 || bytes / 4 != std::uint64_t{t.rows} * t.cols)
      throw std::invalid_argument(std::string("contribution frame: ") + field + " is ("
                                  + std::to_string(t.rows) + ", " + std::to_string(t.cols)
                                  + ") float32 but carries " + std::to_string(bytes) + " bytes");
  };
  check("y", c.y, lengths[2]);
  check("stream", c.stream, lengths[3]);
  return c;
}

} // namespace

contribution decode_header(std::string_view header, std::array<std::uint64_t, 5>& lengths) {
  reader r{header};
  auto c = read_header(r, lengths);
  if (r.at() != header.size())
    throw std::invalid_argument("contribution frame: " + std::to_string(header.size() - r.at())
                                + " bytes after the header, at byte " + std::to_string(r.at()));
  return c;
}

contribution decode_header(std::string_view header) {
  std::array<std::uint64_t, 5> lengths{};
  auto c = decode_header(header, lengths);
  auto ps = payloads(c);
  for (size_t i = 0; i < 5; ++i)
    size_for_reading(*ps[i], lengths[i]);
  return c;
}

std::string encode_contribution(const contribution& c) {
  auto out = encode_header(c);
  for (auto* p : payloads(c))
    out += *p;
  return out;
}

contribution decode_contribution(std::string_view frame) {
  reader r{frame};
  std::array<std::uint64_t, 5> lengths{};
  auto c = read_header(r, lengths);
  auto ps = payloads(c);
  for (size_t i = 0; i < 5; ++i)
    ps[i]->assign(r.take(lengths[i], payload_names[i]));
  if (r.at() != frame.size())
    throw std::invalid_argument("contribution frame: " + std::to_string(frame.size() - r.at())
                                + " bytes after the last payload, at byte "
                                + std::to_string(r.at()));
  return c;
}

} // namespace eoe::actors
