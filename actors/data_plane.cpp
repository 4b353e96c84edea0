#include "actors/data_plane.hpp"

#include "actors/contribution_codec.hpp"
#include "actors/plan.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>

#include <atomic>
#include <map>
#include <mutex>

namespace eoe::actors {

namespace data_planes {

namespace {

struct registry {
  std::atomic<std::shared_ptr<data_plane>> plane;
  std::mutex mu;
  std::map<std::string, caf::actor, std::less<>> receivers;
};

registry& the() {
  static registry r;
  return r;
}

} // namespace

void install(std::shared_ptr<data_plane> plane) {
  the().plane.store(std::move(plane));
}

std::shared_ptr<data_plane> get() {
  return the().plane.load();
}

std::string local_address() {
  auto p = get();
  return p ? p->address() : std::string{};
}

void register_receiver(const std::string& node, caf::actor receiver) {
  auto& r = the();
  std::lock_guard lock{r.mu};
  r.receivers[node] = std::move(receiver);
}

bool deliver(const std::string& node, contribution&& c) {
  caf::actor to;
  {
    auto& r = the();
    std::lock_guard lock{r.mu};
    auto i = r.receivers.find(node);
    if (i == r.receivers.end())
      return false;
    to = i->second;
  }
  caf::anon_send(to, contrib_atom::value, std::move(c));
  return true;
}

} // namespace data_planes

std::shared_ptr<const outgoing_frame> frame_of(const caf::message& msg) {
  auto f = std::make_shared<outgoing_frame>();
  f->keep = msg;
  const auto& c = f->keep.get_as<contribution>(1);
  f->header = encode_header(c);
  const auto ps = payloads(c);
  for (size_t i = 0; i < ps.size(); ++i)
    f->payloads[i] = *ps[i];
  return f;
}

void send_contribution(const mesh_plan& plan, std::uint32_t n, const caf::node_id& here,
                       const caf::message& msg, std::shared_ptr<const outgoing_frame>& frame) {
  const auto& relay = plan.relays[n];
  if (n < plan.data.size() && !plan.data[n].empty() && relay.node() != here) {
    if (auto plane = data_planes::get()) {
      if (!frame)
        frame = frame_of(msg);
      plane->send(plan.data[n], plan.nodes[n], frame);
      return;
    }
  }
  caf::anon_send(caf::actor_cast<caf::actor>(relay), msg);
}

} // namespace eoe::actors
