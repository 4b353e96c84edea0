#include "actors/relay_actor.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/typed_response_promise.hpp>

#include <memory>

namespace eoe::actors {

namespace {

using self_ptr = relay_actor::stateful_pointer<relay_state>;

/// Hands the current message to every local expert of the config layer run as `unrolled`.
void fan_out(self_ptr self, std::uint32_t unrolled, const std::string& sender_node,
             size_t bytes) {
  auto& st = self->state;
  if (sender_node == st.node)
    ++st.stats.local_messages;
  else {
    ++st.stats.remote_messages;
    st.stats.remote_bytes += bytes;
  }
  if (unrolled >= st.schedule.size())
    return;
  auto i = st.local.find(st.schedule[unrolled]);
  if (i == st.local.end())
    return;
  const auto msg = self->current_mailbox_element()->copy_content_to_message();
  for (auto& e : i->second) {
    caf::anon_send(caf::actor_cast<caf::actor>(e), msg);
    ++st.stats.deliveries;
  }
}

} // namespace

relay_actor::behavior_type relay_behavior(relay_actor::stateful_pointer<relay_state> self,
                                          std::string node,
                                          std::vector<std::uint32_t> schedule,
                                          std::map<std::uint32_t, std::vector<expert_actor>> local) {
  self->state.node = std::move(node);
  self->state.schedule = std::move(schedule);
  self->state.local = std::move(local);
  return {
    [=](contrib_atom, const contribution& c) {
      fan_out(self, c.to_layer, c.sender_node,
              c.rows.size() + c.scores.size() + c.y.bytes.size() + c.stream.bytes.size()
                + c.ids.size());
    },
    [=](scores_atom, const score_share& s) {
      fan_out(self, s.layer, s.sender_node, s.scores.size());
    },
    [=](plan_atom, const mesh_plan& p) {
      // Every local expert has the plan before the relay acknowledges it.
      auto rp = self->make_response_promise<ok_atom>();
      auto pending = std::make_shared<size_t>(0);
      for (auto& [layer, experts] : self->state.local)
        *pending += experts.size();
      if (*pending == 0) {
        rp.deliver(ok_atom::value);
        return rp;
      }
      for (auto& [layer, experts] : self->state.local)
        for (auto& e : experts)
          self->request(e, caf::infinite, plan_atom::value, p).then([rp, pending](ok_atom) mutable {
            if (--*pending == 0)
              rp.deliver(ok_atom::value);
          });
      return rp;
    },
    [=](stats_atom) { return self->state.stats; },
  };
}

} // namespace eoe::actors
