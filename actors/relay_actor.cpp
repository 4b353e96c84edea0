#include "actors/relay_actor.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/send.hpp>
#include <caf/typed_response_promise.hpp>

#include <memory>

namespace eoe::actors {

namespace {

using self_ptr = relay_actor::stateful_pointer<relay_state>;

/// Hands the current message to every local member of the config layer run as `unrolled` in
/// `epoch`.
void fan_out(self_ptr self, std::uint64_t epoch, std::uint32_t unrolled,
             const std::string& sender_node, size_t bytes) {
  auto& st = self->state;
  if (sender_node == st.node)
    ++st.stats.local_messages;
  else {
    ++st.stats.remote_messages;
    st.stats.remote_bytes += bytes;
  }
  auto v = st.epochs.find(epoch);
  if (v == st.epochs.end()) {
    caf::aout(self) << "relay " << st.node << ": a message of unknown epoch " << epoch
                    << " dropped" << std::endl;
    return;
  }
  const auto& view = *v->second;
  if (unrolled >= view.schedule.size())
    return;
  const auto layer = view.schedule[unrolled];
  auto here = st.local.find(layer);
  if (here == st.local.end())
    return;
  const auto msg = self->current_mailbox_element()->copy_content_to_message();
  for (auto id : view.plan.members[layer]) {
    auto e = here->second.find(id);
    if (e == here->second.end())
      continue;
    caf::anon_send(caf::actor_cast<caf::actor>(e->second), msg);
    ++st.stats.deliveries;
  }
}

} // namespace

relay_actor::behavior_type relay_behavior(relay_actor::stateful_pointer<relay_state> self,
                                          std::string node) {
  self->state.node = std::move(node);
  return {
    [=](contrib_atom, const contribution& c) {
      fan_out(self, c.epoch, c.to_layer, c.sender_node,
              c.rows.size() + c.scores.size() + c.y.bytes.size() + c.stream.bytes.size()
                + c.ids.size());
    },
    [=](scores_atom, const score_share& s) {
      fan_out(self, s.epoch, s.layer, s.sender_node, s.scores.size());
    },
    [=](plan_atom, const mesh_plan& p) -> caf::result<ok_atom> {
      // Every local member has the plan before the relay acknowledges it.
      try {
        self->state.epochs[p.epoch] = decode_plan(p);
      } catch (const std::exception& e) {
        return caf::make_error(caf::sec::invalid_argument, e.what());
      }
      auto rp = self->make_response_promise<ok_atom>();
      auto pending = std::make_shared<size_t>(1);
      auto done = [rp, pending]() mutable {
        if (--*pending == 0)
          rp.deliver(ok_atom::value);
      };
      for (auto& [layer, experts] : self->state.local)
        for (auto& [id, e] : experts) {
          ++*pending;
          self->request(e, std::chrono::seconds(30), plan_atom::value, p)
            .then([done](ok_atom) mutable { done(); },
                  [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
        }
      done();
      return rp;
    },
    [=](retire_atom, std::uint64_t epoch) {
      self->state.epochs.erase(epoch);
      for (auto& [layer, experts] : self->state.local)
        for (auto& [id, e] : experts)
          self->send(e, retire_atom::value, epoch);
    },
    [=](spawn_atom, std::uint32_t layer, std::uint32_t id, expert_actor e) {
      self->state.local[layer][id] = std::move(e);
    },
    [=](retire_atom, std::uint32_t layer, std::uint32_t id) {
      auto i = self->state.local.find(layer);
      if (i != self->state.local.end())
        i->second.erase(id);
    },
    [=](stats_atom) { return self->state.stats; },
  };
}

} // namespace eoe::actors
