#include "actors/wire.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace eoe::actors {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

wire_tensor to_wire(const matrix& m) {
  wire_tensor t;
  t.rows = static_cast<std::uint32_t>(m.rows());
  t.cols = static_cast<std::uint32_t>(m.cols());
  t.bytes.assign(reinterpret_cast<const char*>(m.data()), m.size() * sizeof(float));
  return t;
}

matrix from_wire(const wire_tensor& t, const char* what) {
  // rows * cols fits 64 bits; times 4 it may wrap ((2^31, 2^31) to 0), so the byte count is
  // compared as values, and a shape past 2^64 bytes is said as such.
  const auto values = static_cast<std::uint64_t>(t.rows) * t.cols;
  if (t.bytes.size() % sizeof(float) != 0 || t.bytes.size() / sizeof(float) != values) {
    const auto need = values <= ~std::uint64_t{0} / sizeof(float)
                        ? std::to_string(values * sizeof(float)) + " bytes"
                        : std::to_string(values) + " floats (over 2^64 bytes)";
    throw std::invalid_argument(std::string{what} + ": a (" + std::to_string(t.rows) + ", "
                                + std::to_string(t.cols) + ") tensor needs " + need + ", got "
                                + std::to_string(t.bytes.size()));
  }
  const auto want = values * sizeof(float);
  matrix m(t.rows, t.cols);
  if (want)
    std::memcpy(m.data(), t.bytes.data(), want);
  return m;
}

wire_partial to_wire(const context::partial& p) {
  wire_partial w;
  w.out = to_wire(p.out);
  w.max = pack(p.max);
  w.sum = pack(p.sum);
  return w;
}

context::partial from_wire(const wire_partial& w) {
  context::partial p;
  p.out = from_wire(w.out, "partial output");
  p.max = unpack<float>(w.max, "partial max");
  p.sum = unpack<float>(w.sum, "partial sum");
  if (p.max.size() != static_cast<size_t>(p.out.rows()) || p.sum.size() != p.max.size())
    throw std::invalid_argument("partial: " + std::to_string(p.out.rows()) + " output rows, "
                                + std::to_string(p.max.size()) + " maxima, "
                                + std::to_string(p.sum.size()) + " sums");
  return p;
}

std::vector<std::uint32_t> members_of(const wire_layer_record& l) {
  return unpack<std::uint32_t>(l.members, "record members");
}

experts::forward_result decode(const infer_result& r, expert_numbering n) {
  experts::forward_result out;
  out.output = from_wire(r.output, "output");
  for (auto& l : r.layers) {
    experts::layer_record rec;
    rec.kind = static_cast<experts::layer_kind>(l.kind);
    if (l.scores.rows > 0)
      rec.scores = from_wire(l.scores, "layer scores");
    rec.active.offsets = unpack<std::int32_t>(l.offsets, "record offsets");
    rec.active.experts = unpack<std::int32_t>(l.experts, "record experts");
    rec.active.gates = unpack<float>(l.gates, "record gates");
    if (rec.active.offsets.empty() || rec.active.gates.size() != rec.active.experts.size()
        || static_cast<size_t>(rec.active.offsets.back()) != rec.active.experts.size())
      throw std::invalid_argument("layer record: offsets, experts and gates do not agree");
    if (const auto members = members_of(l); n == expert_numbering::positions && !members.empty())
      for (auto& e : rec.active.experts) {
        const auto at = std::find(members.begin(), members.end(), static_cast<std::uint32_t>(e));
        if (e < 0 || at == members.end())
          throw std::invalid_argument("layer record of layer " + std::to_string(l.layer)
                                      + ": expert " + std::to_string(l.layer) + "."
                                      + std::to_string(e) + " is not one of its members");
        e = static_cast<std::int32_t>(at - members.begin());
      }
    out.layers.push_back(std::move(rec));
  }
  return out;
}

} // namespace eoe::actors
