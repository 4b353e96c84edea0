#include "actors/coordinator_actor.hpp"

#include "actors/mesh_errc.hpp"

#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <memory>

namespace eoe::actors {

std::vector<std::vector<std::uint32_t>> round_robin_placement(const experts::model_config& c,
                                                              size_t nodes) {
  std::vector<std::vector<std::uint32_t>> out(c.layers.size());
  for (size_t l = 0; l < c.layers.size(); ++l)
    for (int e = 0; e < c.layers[l].experts; ++e)
      out[l].push_back(static_cast<std::uint32_t>((static_cast<size_t>(e) + l) % nodes));
  return out;
}

namespace {

using self_ptr = coordinator_actor::stateful_pointer<coordinator_state>;

/// All nodes have spawned: build epoch 1's plan, hand it out, then admit requests.
void publish_plan(self_ptr self) {
  auto& st = self->state;
  auto& p = st.plan;
  p.epoch = 1;
  p.nodes = st.setup.nodes;
  p.relays.clear();
  for (auto& s : st.spawned)
    p.relays.push_back(s.relay);
  p.composer = st.composer;
  p.composer_node = st.setup.head;
  p.placement = st.setup.placement;
  auto pending = std::make_shared<size_t>(p.relays.size() + 1);
  auto acked = [self, pending](ok_atom) {
    if (--*pending == 0)
      self->state.ready = true;
  };
  auto failed = [self](const caf::error& err) {
    caf::aout(self) << "coordinator: handing out the plan failed: " << describe(err) << std::endl;
  };
  for (auto& r : p.relays)
    self->request(r, std::chrono::seconds(30), plan_atom::value, p).then(acked, failed);
  self->request(st.composer, std::chrono::seconds(30), plan_atom::value, p).then(acked, failed);
}

} // namespace

coordinator_actor::behavior_type
coordinator_behavior(coordinator_actor::stateful_pointer<coordinator_state> self,
                     coordinator_setup setup) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.composer = self->spawn<caf::linked>(composer_behavior, st.setup.model,
                                         st.setup.nodes[st.setup.head]);
  st.spawned.resize(st.setup.nodes.size());
  auto pending = std::make_shared<size_t>(st.setup.nodes.size());
  for (std::uint32_t n = 0; n < st.setup.nodes.size(); ++n) {
    spawn_order order;
    order.node = st.setup.nodes[n];
    order.checkpoint = st.setup.checkpoint;
    for (std::uint32_t l = 0; l < st.setup.placement.size(); ++l)
      for (std::uint32_t e = 0; e < st.setup.placement[l].size(); ++e)
        if (st.setup.placement[l][e] == n)
          order.experts.emplace_back(l, e);
    self->request(st.setup.agents[n], std::chrono::seconds(60), spawn_atom::value, order)
      .then(
        [self, n, pending](spawned_node& s) {
          self->state.spawned[n] = std::move(s);
          if (--*pending == 0)
            publish_plan(self);
        },
        [self, n](const caf::error& err) {
          caf::aout(self) << "coordinator: node " << self->state.setup.nodes[n]
                          << " could not spawn its experts: " << describe(err) << std::endl;
        });
  }
  return {
    [=](infer_atom, infer_request& req) -> caf::result<infer_result> {
      auto& st = self->state;
      if (!st.ready)
        return make_mesh_error(mesh_errc::not_ready, "the cluster is still starting");
      const auto id = ++st.next_request;
      ++st.in_flight;
      auto rp = self->make_response_promise<infer_result>();
      self->request(st.composer, caf::infinite, infer_atom::value, id, std::move(req))
        .then(
          [self, rp](infer_result& r) mutable {
            --self->state.in_flight;
            ++self->state.served;
            rp.deliver(std::move(r));
          },
          [self, rp](caf::error& err) mutable {
            --self->state.in_flight;
            ++self->state.failed;
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [=](status_atom) {
      auto& st = self->state;
      cluster_status s;
      s.epoch = st.ready ? st.plan.epoch : 0;
      s.model = st.setup.model->config.name;
      s.checkpoint = st.setup.checkpoint;
      s.nodes = st.setup.nodes;
      s.addresses = st.setup.addresses;
      s.experts_per_node.assign(st.setup.nodes.size(), 0);
      for (auto& layer : st.setup.placement)
        for (auto n : layer)
          ++s.experts_per_node[n];
      s.alive.assign(st.setup.nodes.size(), true);
      s.requests_served = st.served;
      s.requests_failed = st.failed;
      s.in_flight = st.in_flight;
      return s;
    },
    [=](mute_atom, std::uint32_t layer, std::uint32_t index, bool on) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (layer >= st.setup.placement.size() || index >= st.setup.placement[layer].size())
        return make_mesh_error(mesh_errc::bad_request, "no expert " + expert_name(layer, index));
      const auto node = st.setup.placement[layer][index];
      // The node's experts are listed in placement order.
      size_t k = 0;
      for (std::uint32_t l = 0; l <= layer; ++l)
        for (std::uint32_t e = 0; e < st.setup.placement[l].size(); ++e)
          if (st.setup.placement[l][e] == node && (l < layer || e < index))
            ++k;
      return self->delegate(st.spawned[node].experts.at(k), mute_atom::value, on);
    },
    [=](stats_atom) -> caf::result<std::vector<relay_stats>> {
      auto& st = self->state;
      auto rp = self->make_response_promise<std::vector<relay_stats>>();
      auto out = std::make_shared<std::vector<relay_stats>>(st.spawned.size());
      auto pending = std::make_shared<size_t>(st.spawned.size());
      for (size_t n = 0; n < st.spawned.size(); ++n)
        self->request(st.spawned[n].relay, std::chrono::seconds(10), stats_atom::value)
          .then([rp, out, pending, n](relay_stats s) mutable {
            (*out)[n] = s;
            if (--*pending == 0)
              rp.deliver(*out);
          });
      return rp;
    },
    [=](shutdown_atom) {
      for (auto& a : self->state.setup.agents)
        self->send(a, shutdown_atom::value);
      self->quit(caf::exit_reason::user_shutdown); // linked: the composer ends too
    },
  };
}

} // namespace eoe::actors
