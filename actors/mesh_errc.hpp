#pragma once
// Errors of the mesh, as CAF errors in the "eoe" category: what a client receives.

#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include <cstdint>
#include <string>

namespace eoe::actors {

enum class mesh_errc : std::uint8_t {
  deadline_exceeded = 1, ///< a request could not complete in time; names layer and experts
  bad_request,           ///< the request does not fit the model (shape, ids)
  not_ready,             ///< the cluster has not finished starting
  node_lost,             ///< a node the request needed went away
  internal,              ///< an invariant broke; the message says which
  unauthorized,          ///< a join without the cluster's secret
  link_failed,           ///< a link to another process failed (refused by TLS, no answer)
};

/// The error category atom of mesh errors.
inline constexpr caf::atom_value mesh_category = caf::atom("eoe");

inline caf::error make_mesh_error(mesh_errc code, std::string text) {
  return caf::error{static_cast<std::uint8_t>(code), mesh_category,
                    caf::make_message(std::move(text))};
}

/// "deadline_exceeded: request 7: layer 1: ..." for any CAF error (ours or CAF's own).
std::string describe(const caf::error& err);

} // namespace eoe::actors
