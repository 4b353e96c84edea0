#include "actors/request_batcher.hpp"

#include "actors/wire.hpp"

#include <stdexcept>
#include <string>

namespace eoe::actors {

namespace {

std::uint32_t rows_of(const infer_request& r) noexcept {
  return r.tokens.rows;
}

/// Rows [first, first + n) of a row-major tensor.
wire_tensor slice_rows(const wire_tensor& t, std::uint32_t first, std::uint32_t n, const char* what) {
  const std::size_t row_bytes = std::size_t{t.cols} * 4;
  if (std::size_t{first} + n > t.rows || t.bytes.size() != row_bytes * t.rows)
    throw std::invalid_argument(std::string("the batch's ") + what + " has "
                                + std::to_string(t.rows) + " rows, a member needs rows "
                                + std::to_string(first) + ".." + std::to_string(first + n));
  wire_tensor out;
  out.rows = n;
  out.cols = t.cols;
  out.bytes = t.bytes.substr(first * row_bytes, n * row_bytes);
  return out;
}

} // namespace

request_batcher::request_batcher(std::uint32_t max_rows, std::uint32_t max_in_flight)
  : max_rows_(max_rows), max_in_flight_(max_in_flight > 0 ? max_in_flight : 1) {}

bool request_batcher::batchable(const infer_request& r) const noexcept {
  // A request the composer refuses goes alone, so that it fails alone: no rows, or bytes that
  // are not rows x cols floats (compared as values: times 4, (2^31, 2^31) wraps to 0 bytes).
  return max_rows_ > 0 && r.session == 0 && !r.trace && r.trace_id == 0 && r.tokens.rows > 0
         && r.tokens.bytes.size() % 4 == 0
         && r.tokens.bytes.size() / 4 == std::uint64_t{r.tokens.rows} * r.tokens.cols
         && (r.ids.empty() || r.ids.size() == std::size_t{r.tokens.rows} * 8);
}

request_batch request_batcher::alone(std::uint64_t id, std::uint64_t epoch, infer_request req) {
  ++in_flight_;
  request_batch b;
  b.epoch = epoch;
  b.members.push_back({id, 0, rows_of(req), req.want_record});
  b.request = std::move(req);
  return b;
}

std::optional<request_batch> request_batcher::add(std::uint64_t id, std::uint64_t epoch,
                                                  infer_request req) {
  if (!batchable(req) || in_flight_ < max_in_flight_)
    return alone(id, epoch, std::move(req));
  queue_.push_back({id, epoch, std::move(req)});
  return std::nullopt;
}

std::optional<request_batch> request_batcher::finished() {
  if (in_flight_ > 0)
    --in_flight_;
  if (queue_.empty())
    return std::nullopt;
  return next_from_queue();
}

request_batch request_batcher::next_from_queue() {
  // The oldest request leads; those after it that may share its batch join while the rows fit.
  auto head = std::move(queue_.front());
  queue_.pop_front();
  std::vector<waiting_request> taken;
  std::uint32_t rows = rows_of(head.req);
  for (auto it = queue_.begin(); it != queue_.end() && rows < max_rows_;) {
    const bool fits = it->epoch == head.epoch && it->req.deadline_ms == head.req.deadline_ms
                      && it->req.tokens.cols == head.req.tokens.cols
                      && rows_of(it->req) <= max_rows_ - rows;
    if (fits) {
      rows += rows_of(it->req);
      taken.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  if (taken.empty())
    return alone(head.id, head.epoch, std::move(head.req));
  ++in_flight_;
  request_batch b;
  b.epoch = head.epoch;
  std::vector<const infer_request*> reqs{&head.req};
  b.members.push_back({head.id, 0, rows_of(head.req), head.req.want_record});
  for (auto& w : taken) {
    b.members.push_back({w.id, b.members.back().first_row + b.members.back().rows, rows_of(w.req),
                         w.req.want_record});
    reqs.push_back(&w.req);
  }
  b.request = stack_requests(reqs);
  return b;
}

infer_request stack_requests(const std::vector<const infer_request*>& reqs) {
  infer_request out;
  if (reqs.empty())
    return out;
  out.deadline_ms = reqs.front()->deadline_ms;
  out.want_record = false;
  out.tokens.cols = reqs.front()->tokens.cols;
  std::vector<std::uint64_t> ids;
  for (const auto* r : reqs) {
    if (r->tokens.cols != out.tokens.cols)
      throw std::invalid_argument("requests of " + std::to_string(r->tokens.cols) + " and "
                                  + std::to_string(out.tokens.cols) + " columns cannot share a batch");
    out.tokens.rows += r->tokens.rows;
    out.tokens.bytes += r->tokens.bytes;
    out.want_record = out.want_record || r->want_record;
    if (r->ids.empty()) {
      for (std::uint64_t t = 0; t < r->tokens.rows; ++t)
        ids.push_back(t);
    } else {
      const auto own = unpack<std::uint64_t>(r->ids, "token ids");
      ids.insert(ids.end(), own.begin(), own.end());
    }
  }
  out.ids = pack(ids);
  return out;
}

infer_result split_result(const infer_result& batch, const batch_member& m) {
  infer_result out;
  out.request = m.id;
  out.epoch = batch.epoch;
  out.output = slice_rows(batch.output, m.first_row, m.rows, "output");
  if (!m.want_record)
    return out;
  for (const auto& l : batch.layers) {
    wire_layer_record r;
    r.kind = l.kind;
    r.layer = l.layer;
    r.members = l.members;
    if (l.scores.rows > 0)
      r.scores = slice_rows(l.scores, m.first_row, m.rows, "layer scores");
    const auto offsets = unpack<std::int32_t>(l.offsets, "record offsets");
    if (offsets.size() < std::size_t{m.first_row} + m.rows + 1)
      throw std::invalid_argument("the batch's record has " + std::to_string(offsets.size())
                                  + " offsets, a member needs " + std::to_string(m.first_row + m.rows + 1));
    const auto begin = offsets[m.first_row], end = offsets[m.first_row + m.rows];
    const auto experts = unpack<std::int32_t>(l.experts, "record experts");
    const auto gates = unpack<float>(l.gates, "record gates");
    if (begin < 0 || end < begin || static_cast<std::size_t>(end) > experts.size()
        || experts.size() != gates.size())
      throw std::invalid_argument("the batch's record offsets, experts and gates do not agree");
    std::vector<std::int32_t> own_offsets(m.rows + 1);
    for (std::uint32_t t = 0; t <= m.rows; ++t)
      own_offsets[t] = offsets[m.first_row + t] - begin;
    r.offsets = pack(own_offsets);
    r.experts = pack(std::span<const std::int32_t>{experts.data() + begin, experts.data() + end});
    r.gates = pack(std::span<const float>{gates.data() + begin, gates.data() + end});
    out.layers.push_back(std::move(r));
  }
  return out;
}

} // namespace eoe::actors
