#include "actors/node_agent.hpp"

#include "actors/mesh_errc.hpp"
#include "experts/checkpoint.hpp"

#include <caf/event_based_actor.hpp>

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

node_agent_actor::behavior_type
node_agent_behavior(node_agent_actor::stateful_pointer<node_agent_state> self, std::string node) {
  self->state.node = std::move(node);
  return {
    [=](spawn_atom, const spawn_order& order) -> caf::result<spawned_node> {
      auto& st = self->state;
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
      spawned_node out;
      out.node = st.node;
      std::map<std::uint32_t, std::vector<expert_actor>> local;
      for (auto [layer, index] : order.experts) {
        if (layer >= c.layers.size() || index >= static_cast<std::uint32_t>(c.layers[layer].experts))
          return make_mesh_error(mesh_errc::bad_request,
                                 "node " + st.node + ": the model has no expert "
                                   + expert_name(layer, index));
        auto e = self->spawn<caf::linked>(expert_behavior, expert_spec{model, layer, index, st.node});
        local[layer].push_back(e);
        out.experts.push_back(e);
        st.experts.push_back(e);
      }
      st.relay = self->spawn<caf::linked>(relay_behavior, st.node, unrolled_schedule(c),
                                          std::move(local));
      out.relay = st.relay;
      return out;
    },
    [=](status_atom) { return self->state.node; },
    [=](shutdown_atom) { self->quit(caf::exit_reason::user_shutdown); },
  };
}

} // namespace eoe::actors
