#pragma once
// The composer: starts each request (embedding, then the first layer), merges the last
// layer's outputs into the residual stream, applies the head, assembles the activation
// record from what every expert decided, and answers; or, when the deadline passes first,
// answers with an error that names the request, the layer and the experts that did not answer.

#include "actors/expert_actor.hpp"

#include <caf/typed_response_promise.hpp>

#include <chrono>

namespace eoe::actors {

struct pending_request {
  caf::typed_response_promise<infer_result> rp;
  std::shared_ptr<const epoch_view> view; ///< the request's epoch
  Eigen::Index tokens = 0;
  bool want_record = true;
  std::uint32_t deadline_ms = 0;
  std::uint64_t trace = 0; ///< the request's trace id (0: not traced)
  std::vector<std::optional<caf::message>> outputs;   ///< the last layer's, by expert
  size_t outputs_in = 0;
  std::vector<std::vector<std::optional<expert_record>>> records; ///< [unrolled][expert]
  std::vector<std::vector<bool>> heard; ///< [unrolled][expert]: any sign of life
  size_t records_in = 0, records_expected = 0;
};

struct composer_state {
  std::shared_ptr<const experts::model> model; ///< embedding and head (membership never changes them)
  std::string node;
  std::unique_ptr<kernels::backend> be;
  std::map<std::uint64_t, std::shared_ptr<const epoch_view>> epochs;
  std::map<std::uint64_t, pending_request> pending;

  static inline const char* name = "eoe.composer";
};

composer_actor::behavior_type
composer_behavior(composer_actor::stateful_pointer<composer_state> self,
                  std::shared_ptr<const experts::model> model, std::string node);

} // namespace eoe::actors
