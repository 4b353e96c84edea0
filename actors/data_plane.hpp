#pragma once
// The data plane: how contributions (the tensor payloads of the mesh) cross between node
// processes. CAF 0.17's middleman copies every payload into and out of its buffers; a node
// process installs a data plane of its own (net/tcp_data_plane: one TCP connection per peer
// node, frames of actors/contribution_codec) and contributions to another process's relay take
// it (top-k score shares too, as contributions of kind 1), while plans, records and
// everything else stay on CAF. Without an installed data plane (one process, tests)
// everything goes through CAF as before.

#include "actors/interfaces.hpp"

#include <caf/actor.hpp>
#include <caf/message.hpp>
#include <caf/node_id.hpp>

#include <array>
#include <memory>
#include <string>
#include <string_view>

namespace eoe::actors {

/// A contribution on its way out: the frame header, and views of the five payloads inside the
/// message that holds the contribution (kept alive here; nothing is copied).
struct outgoing_frame {
  std::string header;
  caf::message keep;
  std::array<std::string_view, 5> payloads;
};

/// The frame of the contribution a message (contrib_atom, contribution) carries.
std::shared_ptr<const outgoing_frame> frame_of(const caf::message& msg);

class data_plane {
public:
  virtual ~data_plane() = default;
  /// host:port where this process receives frames.
  virtual const std::string& address() const = 0;
  /// Queues a contribution frame for the relay of `node`, which listens at `address`. Never
  /// blocks; a frame for a peer that cannot be reached is dropped (the request then fails
  /// with its deadline, or with the lost node).
  virtual void send(const std::string& address, const std::string& node,
                    std::shared_ptr<const outgoing_frame> frame) = 0;
};

namespace data_planes {

/// The process's data plane (nullptr: none).
void install(std::shared_ptr<data_plane> plane);
std::shared_ptr<data_plane> get();
/// This process's data address, "" without a data plane.
std::string local_address();

/// Where frames for `node` are delivered in this process (its relay, or any actor that takes
/// contrib_atom, contribution).
void register_receiver(const std::string& node, caf::actor receiver);
/// Hands a decoded contribution to the receiver registered for `node`; false when none is.
bool deliver(const std::string& node, contribution&& c);

} // namespace data_planes

/// Sends a contribution to the relay of node n of a plan: over the data plane when that relay
/// lives in another process that has a data address and this process has a data plane, through
/// CAF otherwise. `frame` is made on first use and shared by every node it goes to.
void send_contribution(const mesh_plan& plan, std::uint32_t n, const caf::node_id& here,
                       const caf::message& msg, std::shared_ptr<const outgoing_frame>& frame);

} // namespace eoe::actors
