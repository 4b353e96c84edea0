#include "actors/relay_actor.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/trace.hpp"

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

/// What a traced message says of itself.
struct traced {
  std::uint64_t trace = 0, request = 0, msg = 0;
  const char* name = "";
  std::int32_t layer = -1;
  /// The sending actor's name, from the epoch's plan.
  std::string (*sender)(const epoch_view&, std::uint32_t unrolled, std::uint32_t position);
  std::uint32_t position = 0;
};

std::string member(const epoch_view& v, std::uint32_t unrolled, std::uint32_t position) {
  if (unrolled >= v.schedule.size())
    return "?";
  const auto l = v.schedule[unrolled];
  return position < v.plan.members[l].size() ? expert_actor_name(l, v.plan.members[l][position])
                                             : "?";
}

/// Hands msg (empty: the current message) to every local member of the config layer run as
/// `unrolled` in `epoch`.
void fan_out(self_ptr self, std::uint64_t epoch, std::uint32_t unrolled,
             const std::string& sender_node, size_t bytes, const traced& t,
             caf::message msg = {}) {
  auto& st = self->state;
  const trace_scope tr{t.trace, t.request, st.node, relay_name(st.node)};
  if (tr) {
    auto v = st.epochs.find(epoch);
    tr.message(trace_kind::receive, t.name,
               v == st.epochs.end() ? "?" : t.sender(*v->second, unrolled, t.position), t.msg, 0,
               bytes, t.layer, -1, tracing::now_ns());
  }
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
  if (msg.empty()) // the contribution itself, moved on (its handler reads nothing after)
    msg = self->current_mailbox_element()->move_content_to_message();
  for (auto id : view.plan.members[layer]) {
    auto e = here->second.find(id);
    if (e == here->second.end())
      continue;
    if (tr)
      tr.message(trace_kind::send, t.name, expert_actor_name(layer, id), t.msg, 1, bytes, t.layer,
                 static_cast<std::int32_t>(id), tracing::now_ns());
    caf::anon_send(caf::actor_cast<caf::actor>(e->second), msg);
    ++st.stats.deliveries;
  }
}

} // namespace

relay_actor::behavior_type relay_behavior(relay_actor::stateful_pointer<relay_state> self,
                                          std::string node) {
  self->state.node = std::move(node);
  return {
    [=](contrib_atom, contribution& c) {
      if (c.kind == contribution_kind::score_share) {
        auto s = share_of(std::move(c));
        traced t{s.trace, s.request, s.msg, "scores", static_cast<std::int32_t>(s.layer), member,
                 s.expert};
        const auto bytes = s.scores.size();
        const auto epoch = s.epoch;
        const auto layer = s.layer;
        const auto from = s.sender_node;
        fan_out(self, epoch, layer, from, bytes, t,
                caf::make_message(scores_atom::value, std::move(s)));
        return;
      }
      // Bound for the composer, come over the data plane: hand it on. Those are an expert
      // layer's outputs where the composer starts the next one (past the last layer, or a
      // language model's attention next); the composer's own starts of such a layer come
      // from the composer's node, and fan out to the experts.
      if (auto v = self->state.epochs.find(c.epoch);
          v != self->state.epochs.end() && c.to_layer > 0
          && v->second->composer_feeds(c.to_layer)
          && c.sender_node != v->second->plan.nodes.at(v->second->plan.composer_node)) {
        caf::anon_send(caf::actor_cast<caf::actor>(v->second->plan.composer),
                       self->current_mailbox_element()->move_content_to_message());
        return;
      }
      traced t{c.trace, c.request, c.msg, "contrib", static_cast<std::int32_t>(c.to_layer),
               [](const epoch_view& v, std::uint32_t u, std::uint32_t position) {
                 return v.composer_feeds(u) ? std::string("composer") : member(v, u - 1, position);
               },
               c.sender};
      fan_out(self, c.epoch, c.to_layer, c.sender_node, contribution_bytes(c), t);
    },
    [=](plan_atom, const mesh_plan& p) -> caf::result<ok_atom> {
      // Every local member has the plan before the relay acknowledges it.
      std::shared_ptr<const epoch_view> view;
      try {
        view = decode_plan(p);
      } catch (const std::exception& e) { // refused whole: the epochs held stay as they were
        return make_mesh_error(mesh_errc::bad_request,
                               relay_name(self->state.node) + ": " + e.what());
      }
      // A plan from another composer is a restarted head's: the old head's epochs are over.
      std::erase_if(self->state.epochs,
                    [&p](const auto& e) { return e.second->plan.composer != p.composer; });
      self->state.epochs[p.epoch] = std::move(view);
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
