#include "actors/node_agent.hpp"

#include "actors/data_plane.hpp"
#include "actors/trace.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/shard_actor.hpp"
#include "experts/model/checkpoint.hpp"

#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <stdexcept>

namespace eoe::actors {

std::shared_ptr<const experts::model> load_model(const std::string& checkpoint) {
  if (checkpoint.empty())
    return std::make_shared<const experts::model>(
      experts::init_model(experts::default_model_config()));
  auto m = experts::load_checkpoint(checkpoint);
  if (!m)
    throw std::runtime_error(m.error().message);
  return std::make_shared<const experts::model>(std::move(*m));
}

namespace {

using self_ptr = node_agent_actor::stateful_pointer<node_agent_state>;

void retire_expert(self_ptr self, std::uint32_t layer, std::uint32_t id) {
  auto& st = self->state;
  auto i = st.experts.find({layer, id});
  if (i == st.experts.end())
    return;
  self->send(st.relay, retire_atom::value, layer, id);
  // Unlinked first: the expert's exit must not take its node agent (and node) along.
  self->unlink_from(i->second);
  self->send_exit(i->second, caf::exit_reason::user_shutdown);
  st.experts.erase(i);
}

/// A new actor for expert (layer, id), replacing the one a previous head ordered.
expert_actor spawn_expert(self_ptr self, std::uint32_t layer, std::uint32_t id,
                          experts::ffn_expert weights) {
  auto& st = self->state;
  retire_expert(self, layer, id);
  auto e = self->spawn<caf::linked>(
    expert_behavior,
    expert_spec{std::make_shared<const experts::ffn_expert>(std::move(weights)), layer, id, st.node});
  st.experts[{layer, id}] = e;
  self->send(st.relay, spawn_atom::value, layer, id, e);
  return e;
}

} // namespace

node_agent_actor::behavior_type
node_agent_behavior(node_agent_actor::stateful_pointer<node_agent_state> self, std::string node) {
  self->state.node = std::move(node);
  self->state.relay = self->spawn<caf::linked>(relay_behavior, self->state.node);
  if (data_planes::get()) // frames for this node go to its relay
    data_planes::register_receiver(self->state.node,
                                   caf::actor_cast<caf::actor>(self->state.relay));
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.head) {
      // The head is gone: its experts serve nothing more. A restarted head orders anew.
      while (!st.experts.empty())
        retire_expert(self, st.experts.begin()->first.first, st.experts.begin()->first.second);
      st.head = caf::actor_addr{};
    }
    // A context composer is gone (its head was killed or restarted): its sessions are over.
    auto i = st.shards_of.find(dm.source);
    if (i == st.shards_of.end())
      return;
    for (auto& s : i->second) {
      self->send_exit(s, caf::exit_reason::user_shutdown);
      st.hosted.erase(s.id());
      std::erase(st.shards, s);
    }
    st.shards_of.erase(i);
  });
  return {
    [=](spawn_atom, const spawn_order& order) -> caf::result<spawned_node> {
      auto& st = self->state;
      // The first order names the head: monitored, and the only one obeyed while it lives
      // (the node's port is open to any process that reaches it). Once it is gone (its
      // experts retired, above), the next order is a restarted head's.
      const auto from = caf::actor_cast<caf::actor_addr>(self->current_sender());
      if (!from)
        return make_mesh_error(mesh_errc::bad_request,
                               "node " + st.node + ": a spawn order needs a sender");
      if (order.node != st.node) // a cluster file whose address is another node's
        return make_mesh_error(mesh_errc::bad_request, "node " + st.node
                                                         + " got a spawn order for node "
                                                         + order.node);
      if (st.head && from != st.head) {
        // A head of a newer term (it won etcd's election) replaces one that seems alive
        // but lost its lease (stopped, cut off): the old one's experts go.
        if (order.term <= st.term)
          return make_mesh_error(mesh_errc::unauthorized,
                                 "node " + st.node + " takes spawn orders from its head only, "
                                   "which is alive");
        self->demonitor(st.head);
        while (!st.experts.empty())
          retire_expert(self, st.experts.begin()->first.first, st.experts.begin()->first.second);
        st.head = caf::actor_addr{};
      }
      if (!st.head) {
        if (order.term < st.term)
          return make_mesh_error(mesh_errc::unauthorized,
                                 "node " + st.node + ": a spawn order of term "
                                   + std::to_string(order.term) + " after one of term "
                                   + std::to_string(st.term));
        st.head = from;
        st.term = order.term;
        self->monitor(caf::actor_cast<caf::actor>(self->current_sender()));
      }
      spawned_node out;
      out.node = st.node;
      out.relay = st.relay;
      out.data = data_planes::local_address();
      if (!order.experts.empty()) {
        std::shared_ptr<const experts::model> model;
        try {
          auto& cached = st.models[order.checkpoint];
          if (!cached)
            cached = load_model(order.checkpoint);
          model = cached;
        } catch (const std::exception& e) {
          st.models.erase(order.checkpoint);
          return make_mesh_error(mesh_errc::bad_request, "node " + st.node + ": " + e.what());
        }
        const auto& c = model->config;
        for (auto [layer, id] : order.experts) {
          if (layer >= c.layers.size() || id >= static_cast<std::uint32_t>(c.layers[layer].experts))
            return make_mesh_error(mesh_errc::bad_request, "node " + st.node
                                                             + ": the model has no expert "
                                                             + expert_name(layer, id));
          out.experts.push_back(spawn_expert(self, layer, id, model->layers[layer].experts[id]));
        }
      }
      for (auto& w : order.explicit_experts) {
        try {
          out.experts.push_back(spawn_expert(self, w.layer, w.id, expert_from(w)));
        } catch (const std::exception& e) {
          return make_mesh_error(mesh_errc::bad_request, "node " + st.node + ": expert "
                                                           + expert_name(w.layer, w.id) + ": "
                                                           + e.what());
        }
      }
      return out;
    },
    [=](retire_atom, std::uint32_t layer, std::uint32_t id) {
      if (caf::actor_cast<caf::actor_addr>(self->current_sender()) == self->state.head)
        retire_expert(self, layer, id);
    },
    [=](create_atom, const context_spec& spec, std::uint64_t begin,
        std::uint64_t capacity) -> caf::result<shard_actor> {
      auto& st = self->state;
      // Shards whose data is gone were dropped: forget them.
      std::erase_if(st.hosted, [](const auto& h) { return h.second.expired(); });
      const auto dropped = [&st](const shard_actor& s) { return !st.hosted.contains(s.id()); };
      std::erase_if(st.shards, dropped);
      for (auto& [owner, shards] : st.shards_of)
        std::erase_if(shards, dropped);
      std::shared_ptr<hosted_shard> data;
      try {
        data = std::make_shared<hosted_shard>(spec, begin, capacity);
      } catch (const std::exception& e) { // a shape that does not fit, memory it cannot have
        return make_mesh_error(mesh_errc::bad_request,
                               "node " + st.node + ": context shard of " + std::to_string(capacity)
                                 + " positions: " + e.what());
      }
      auto s = self->spawn(shard_behavior, data);
      st.shards.push_back(s);
      st.hosted[s.id()] = data;
      if (auto owner = self->current_sender()) {
        auto addr = caf::actor_cast<caf::actor_addr>(owner);
        if (!st.shards_of.contains(addr))
          self->monitor(caf::actor_cast<caf::actor>(owner));
        st.shards_of[addr].push_back(s);
      }
      return s;
    },
    [=](decode_atom, const std::vector<shard_call>& calls) -> std::vector<attention_reply> {
      // A batch of the context composer's shard calls, one message across the network: each
      // runs here on the data of a shard this agent spawned (the context composer sends every
      // call to its shard's host), and every answer (or error) goes back in one reply.
      std::vector<attention_reply> out(calls.size());
      std::vector<std::shared_ptr<hosted_shard>> data(calls.size());
      for (size_t i = 0; i < calls.size(); ++i) {
        const auto& c = calls[i];
        const auto h = c.shard ? self->state.hosted.find(c.shard.id()) : self->state.hosted.end();
        data[i] = h != self->state.hosted.end() ? h->second.lock() : nullptr;
        if (!data[i])
          out[i].error = "shard decode: no shard " + std::to_string(c.shard ? c.shard.id() : 0)
                         + " on node " + self->state.node + " (its context was dropped)";
      }
      decode_calls(data, calls, out, parallel_decode_positions);
      return out;
    },
    [=](status_atom) { return self->state.node; },
    [=](clock_atom) { return tracing::now_ns(); },
    [=](clock_atom, std::int64_t offset_ns) {
      tracing::set_clock_offset(self->state.node, offset_ns);
    },
    [=](fence_atom, const std::string& why) {
      if (caf::actor_cast<caf::actor_addr>(self->current_sender()) != self->state.head)
        return;
      // Declared lost while it was silent (stopped, stalled): its experts were moved out of
      // the cluster, so it goes rather than serve stale epochs; restarted (or joined with
      // eoe node --join) it is admitted afresh.
      caf::aout(self) << "eoe node " << self->state.node << ": the head declared this node lost ("
                      << why << "); exiting" << std::endl;
      for (auto& s : self->state.shards)
        self->send_exit(s, caf::exit_reason::user_shutdown);
      // Not a shutdown: the process exits non-zero (net/node_runtime.cpp), so that a unit
      // with Restart=on-failure starts it again and the head takes it back.
      self->quit(make_mesh_error(mesh_errc::node_lost, why));
    },
    [=](shutdown_atom) {
      if (self->state.head && caf::actor_cast<caf::actor_addr>(self->current_sender()) != self->state.head)
        return;
      for (auto& s : self->state.shards)
        self->send_exit(s, caf::exit_reason::user_shutdown);
      self->quit(caf::exit_reason::user_shutdown);
    },
  };
}

} // namespace eoe::actors
