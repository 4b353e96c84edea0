#pragma once
// Classifier requests coalesced into batches, as iteration-level batching does it: a request
// that arrives while fewer than `max_in_flight` batches are in the mesh goes at once (no added
// wait when the mesh is idle); the ones that arrive while it is busy wait, and when a batch
// comes back they leave together as the next one, up to `max_rows` rows. Plain code with no
// actor: the coordinator feeds it requests and finished batches and sends what it returns.
//
// A batch is one request to the mesh: its members' tokens stacked, their ids made explicit
// (a request without ids means its own row indices, which stacking would shift), records
// asked for when any member asks. Each token's answer depends on that token alone (experts
// score, rank and compute per row), so a member's answer, split off again, is what it would
// have been alone. Members share an epoch, a width, and a deadline (only requests with the same deadline_ms are
// stacked, so none waits on a longer one; it counts from when the batch leaves); traced
// requests, language-model steps and requests without rows or whose tokens or ids do not
// match their rows (a bad request fails alone) go alone.

#include "actors/messages.hpp"

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace eoe::actors {

/// One request of a batch: who it is and where its rows are.
struct batch_member {
  std::uint64_t id = 0;      ///< the coordinator's request id
  std::uint32_t first_row = 0;
  std::uint32_t rows = 0;
  bool want_record = true;
};

/// A batch to send: the stacked request and its members in row order.
struct request_batch {
  std::uint64_t epoch = 0; ///< every member's: requests of different epochs are not stacked
  infer_request request;
  std::vector<batch_member> members;
};

class request_batcher {
public:
  /// max_rows 0: no batching (every request alone, none waits).
  request_batcher(std::uint32_t max_rows, std::uint32_t max_in_flight);

  /// A request admitted: the batch to send now, or nothing when it waits for one.
  std::optional<request_batch> add(std::uint64_t id, std::uint64_t epoch, infer_request req);

  /// A batch came back (answered or failed): the next batch to send, if requests wait.
  std::optional<request_batch> finished();

  std::size_t waiting() const noexcept {
    return queue_.size();
  }
  std::uint32_t in_flight() const noexcept {
    return in_flight_;
  }

private:
  struct waiting_request {
    std::uint64_t id;
    std::uint64_t epoch;
    infer_request req;
  };

  /// Whether a request may share a batch at all.
  bool batchable(const infer_request& r) const noexcept;
  request_batch alone(std::uint64_t id, std::uint64_t epoch, infer_request req);
  request_batch next_from_queue();

  std::uint32_t max_rows_;
  std::uint32_t max_in_flight_;
  std::uint32_t in_flight_ = 0;
  std::deque<waiting_request> queue_;
};

/// The stacked request of members' requests (in order; ids made explicit).
infer_request stack_requests(const std::vector<const infer_request*>& reqs);

/// A member's own answer cut from its batch's answer: its output rows and, if it asked, its
/// rows of every layer's record. Throws std::invalid_argument when the batch's answer does
/// not have the rows its members need.
infer_result split_result(const infer_result& batch, const batch_member& m);

} // namespace eoe::actors
