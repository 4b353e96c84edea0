#include "actors/coordinator_actor.hpp"
#include "actors/coordinator_parts.hpp"

#include "actors/context_actor.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/request_batcher.hpp"
#include "actors/secret.hpp"
#include "actors/trace.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/membership.hpp"

#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <utility>
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

namespace coordinator_parts {

std::string node_list(const std::vector<std::string>& names) {
  std::string out;
  for (auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

/// The experts an epoch places on node n, by name.
std::vector<std::string> experts_on(const epoch_entry& e, std::uint32_t n) {
  std::vector<std::string> out;
  for (std::uint32_t l = 0; l < e.placement.size(); ++l)
    for (size_t p = 0; p < e.placement[l].size(); ++p)
      if (e.placement[l][p] == n)
        out.push_back(expert_name(l, e.members[l][p]));
  return out;
}

void send_batch(self_ptr self, request_batch b);

/// A batch's place in the mesh is free: the next batch leaves, if requests wait.
void send_next(self_ptr self) {
  if (auto next = self->state.batcher.finished())
    send_batch(self, std::move(*next));
}

/// A request of a batch in the mesh is answered (by the batch's reply, or before it: a lost
/// node fails its requests at once): the batch's last frees its place for the next batch.
void member_done(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  auto b = st.batch_of.find(id);
  if (b == st.batch_of.end())
    return;
  const auto batch = b->second;
  st.batch_of.erase(b);
  if (auto left = st.batch_left.find(batch); left != st.batch_left.end() && --left->second == 0) {
    st.batch_left.erase(left);
    send_next(self);
  }
}

/// Answers an admitted request (once) and lets its epoch retire when it was the last.
void complete(self_ptr self, std::uint64_t id, caf::expected<infer_result> r) {
  auto& st = self->state;
  auto it = st.requests.find(id);
  if (it == st.requests.end())
    return; // failed already (its node was lost)
  if (r) {
    ++st.served;
    it->second.rp.deliver(std::move(*r));
  } else {
    ++st.failed;
    it->second.rp.deliver(std::move(r.error()));
  }
  if (auto e = st.epochs.find(it->second.epoch); e != st.epochs.end())
    --e->second.in_flight;
  st.requests.erase(it);
  retire_idle(self);
  member_done(self, id);
}


/// Sends a batch to the composer (as one request, under its first member's id) and answers
/// each member with its rows; the next batch leaves when all of this one's are answered.
void send_batch(self_ptr self, request_batch b) {
  auto& st = self->state;
  const auto id = b.members.front().id;
  // Members failed while they waited (a lost node) are not waited for; a batch of none such
  // is not sent at all.
  size_t live = 0;
  for (const auto& m : b.members)
    if (st.requests.contains(m.id)) {
      st.batch_of[m.id] = id;
      ++live;
    }
  if (live == 0) {
    send_next(self);
    return;
  }
  st.batch_left[id] = live;
  ++st.batches;
  const trace_scope tr{b.request.trace_id, id, st.setup.nodes[st.setup.head], "coordinator"};
  if (tr) {
    b.request.trace_msg = tracing::next_message_id();
    tr.message(trace_kind::send, "infer", "composer", b.request.trace_msg, 0,
               b.request.tokens.bytes.size() + b.request.ids.size(), -1, -1, tracing::now_ns());
  }
  auto members = std::make_shared<const std::vector<batch_member>>(std::move(b.members));
  self->request(st.composer, caf::infinite, infer_atom::value, id, b.epoch, std::move(b.request))
    .then(
      [self, members, tr](infer_result& r) {
        if (tr)
          tr.message(trace_kind::receive, "result", "composer", r.trace_msg, 0,
                     r.output.bytes.size(), -1, -1, tracing::now_ns());
        if (members->size() == 1) {
          complete(self, members->front().id, std::move(r));
        } else {
          for (const auto& m : *members) {
            caf::expected<infer_result> own = caf::error{};
            try {
              own = split_result(r, m);
            } catch (const std::exception& e) {
              own = make_mesh_error(mesh_errc::internal, "request " + std::to_string(m.id)
                                                           + ": its batch's answer: " + e.what());
            }
            complete(self, m.id, std::move(own));
          }
        }
      },
      [self, members](caf::error& err) {
        for (const auto& m : *members)
          complete(self, m.id, err);
      });
}

/// Pins a request to the current epoch and hands it to the batcher, which sends it at once
/// or with the next batch.
void admit(self_ptr self, infer_request req, caf::typed_response_promise<infer_result> rp) {
  auto& st = self->state;
  const auto id = ++st.next_request;
  const auto epoch = st.current;
  ++st.epochs.at(epoch).in_flight;
  st.requests[id] = {rp, epoch};
  if (req.trace || tracing::sampled(id, st.setup.trace_sample))
    req.trace_id = st.trace_salt ^ id;
  else
    req.trace_id = 0;
  if (auto b = st.batcher.add(id, epoch, std::move(req)))
    send_batch(self, std::move(*b));
}


} // namespace coordinator_parts

namespace {

using namespace coordinator_parts;

/// Requests that may wait for the epoch without a lost node.
constexpr size_t max_held = 4096;

/// "1.3" -> (1, 3).
bool parse_expert_name(const std::string& s, std::uint32_t& layer, std::uint32_t& id) {
  const auto dot = s.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == s.size())
    return false;
  try {
    size_t a = 0, b = 0;
    layer = static_cast<std::uint32_t>(std::stoul(s.substr(0, dot), &a));
    id = static_cast<std::uint32_t>(std::stoul(s.substr(dot + 1), &b));
    return a == dot && b == s.size() - dot - 1;
  } catch (const std::exception&) {
    return false;
  }
}

caf::error change_error(std::string text) {
  return make_mesh_error(mesh_errc::bad_request, std::move(text));
}

/// Turns a membership change into a response: the new epoch, or the error.
template <class Promise>
done_fn answer(Promise rp) {
  return [rp](caf::expected<std::uint64_t> epoch) mutable {
    if (epoch)
      rp.deliver(*epoch);
    else
      rp.deliver(std::move(epoch.error()));
  };
}

/// The model for `add-expert ... --init init`, or the reason there is none.
experts::expected<experts::model> model_with_new_expert(const coordinator_state& st,
                                                        const epoch_entry& e, std::uint32_t layer,
                                                        std::uint32_t id, const std::string& init) {
  const auto& m = *e.model;
  if (init == "zero") {
    return experts::with_expert(m, layer, experts::zero_expert(m, layer, m.config.seed ^ id), {});
  }
  if (init.starts_with("clone:")) {
    std::uint32_t l = 0, source = 0;
    if (!parse_expert_name(init.substr(6), l, source))
      return experts::fail(experts::errc::data_invalid,
                           "--init " + init + ": expected clone:LAYER.EXPERT, for example clone:1.3");
    if (l != layer)
      return experts::fail(experts::errc::data_invalid,
                           "--init " + init + ": a clone joins its original's layer, not layer "
                             + std::to_string(layer));
    const auto& ids = e.members[layer];
    const auto p = std::find(ids.begin(), ids.end(), source);
    if (p == ids.end())
      return experts::fail(experts::errc::data_invalid,
                           "--init " + init + ": expert " + expert_name(l, source)
                             + " is not a member of the current epoch");
    return experts::with_clone(m, layer, static_cast<size_t>(p - ids.begin()));
  }
  if (init.starts_with("checkpoint:")) {
    auto spec = init.substr(11);
    std::string file = spec, name = std::to_string(layer) + ".0";
    if (auto colon = spec.rfind(':'); colon != std::string::npos && colon > 0) {
      std::uint32_t l = 0, i = 0;
      if (parse_expert_name(spec.substr(colon + 1), l, i)) {
        file = spec.substr(0, colon);
        name = spec.substr(colon + 1);
      }
    }
    std::uint32_t sl = 0, si = 0;
    parse_expert_name(name, sl, si);
    auto src = experts::load_checkpoint(file);
    if (!src)
      return eoe::unexpected(src.error());
    if (sl >= src->layers.size() || si >= src->layers[sl].experts.size())
      return experts::fail(experts::errc::checkpoint_mismatch,
                           file + ": the checkpoint has no expert " + name);
    const auto& slp = src->layers[sl];
    experts::expert_entries x;
    if (slp.tau.size())
      x.tau = slp.tau(0, si);
    if (slp.select_bias.size())
      x.select_bias = slp.select_bias(0, si);
    if (slp.gate_bias.size())
      x.gate_bias = slp.gate_bias(0, si);
    return experts::with_expert(m, layer, slp.experts[si], x);
  }
  (void) st;
  (void) id;
  return experts::fail(experts::errc::data_invalid,
                       "--init " + init + ": expected zero, clone:LAYER.EXPERT or "
                                          "checkpoint:FILE[:LAYER.EXPERT]");
}


} // namespace

coordinator_actor::behavior_type
coordinator_behavior(coordinator_actor::stateful_pointer<coordinator_state> self,
                     coordinator_setup setup) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.batcher = request_batcher{st.setup.max_batch_rows, st.setup.batches_in_flight};
  st.contexts = self->spawn<caf::linked>(context_behavior, st.setup.agents, size_t{st.setup.head},
                                         st.setup.kv_placement);
  st.composer = self->spawn<caf::linked>(
    composer_behavior, st.setup.model, st.setup.nodes[st.setup.head],
    composer_setup{st.contexts, st.setup.kv_shard_positions, st.setup.kv_block_size, 1024,
                   st.setup.session_idle, st.setup.max_step_tokens, st.setup.steps_in_flight});
  st.trace_salt = static_cast<std::uint64_t>(tracing::now_ns()) << 24;
  for (std::uint32_t n = 0; n < st.setup.nodes.size(); ++n) {
    const bool joined = n < st.setup.joined.size() && st.setup.joined[n];
    auto& node = st.nodes.emplace_back();
    node.name = st.setup.nodes[n];
    node.address = st.setup.addresses[n];
    node.agent = st.setup.agents[n];
    node.joined = joined;
    if (n != st.setup.head && st.setup.agents[n]) {
      self->monitor(st.setup.agents[n]);
      measure_clock(self, st.setup.agents[n], st.setup.nodes[n]);
    }
  }
  self->set_exception_handler([self](std::exception_ptr& eptr) -> caf::error {
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      caf::aout(self) << "coordinator: unexpected exception: " << e.what() << std::endl;
      return make_mesh_error(mesh_errc::internal, e.what());
    }
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    for (std::uint32_t n = 0; n < st.nodes.size(); ++n) {
      if (st.nodes[n].agent.address() != dm.source)
        continue;
      if (st.nodes[n].alive) {
        ++st.lost_down;
        lose_node(self, n, self->system().render(dm.reason));
      }
      st.nodes[n].silent = false; // gone: nothing left to fence; its address is tried again
    }
  });
  if (st.setup.heartbeat_ms > 0)
    self->delayed_send(self, std::chrono::milliseconds(st.setup.heartbeat_ms),
                       heartbeat_atom::value);
  start_first_epoch(self);
  return {
    [=](infer_atom, infer_request& req) -> caf::result<infer_result> {
      auto& st = self->state;
      if (!st.broken.empty())
        return make_mesh_error(mesh_errc::not_ready, st.broken);
      if (st.current == 0)
        return make_mesh_error(mesh_errc::not_ready, "the cluster is still starting");
      auto rp = self->make_response_promise<infer_result>();
      if (!st.rebuilding.empty()) {
        if (st.held.size() >= max_held)
          return make_mesh_error(mesh_errc::node_lost,
                                 "node " + st.rebuilding + " was lost and " + std::to_string(max_held)
                                   + " requests already wait for the epoch without it");
        st.held.emplace_back(std::move(req), rp);
        return rp;
      }
      admit(self, std::move(req), rp);
      return rp;
    },
    [=](heartbeat_atom) {
      auto& st = self->state;
      const auto now = tracing::now_ns();
      const auto limit = static_cast<std::int64_t>(st.setup.suspect_after_ms) * 1'000'000;
      if (st.current == 0) { // starting: nodes load their experts; silence counts once ready
        self->delayed_send(self, std::chrono::milliseconds(st.setup.heartbeat_ms),
                           heartbeat_atom::value);
        return;
      }
      retry_lost_nodes(self);
      for (std::uint32_t n = 0; n < st.nodes.size(); ++n) {
        auto& node = st.nodes[n];
        if (n == st.setup.head || !node.agent || (!node.alive && !node.silent))
          continue;
        if (node.heard_ns == 0)
          node.heard_ns = now; // its first round since the cluster is ready
        if (node.alive && now - node.heard_ns > limit) {
          // Connected but silent (stopped, stalled, swapping): lost as a killed node is.
          ++st.lost_silent;
          node.silent = true;
          lose_node(self, n, node.name + " silent for "
                               + std::to_string((now - node.heard_ns) / 1'000'000) + " ms");
        }
        if (node.pinged)
          continue;
        node.pinged = true;
        const auto answered = [self, n, agent = node.agent] {
          auto& nd = self->state.nodes[n];
          if (nd.agent != agent) { // a node joined under its name meanwhile: the old one goes
            self->send(agent, fence_atom::value, "replaced by a node that joined as " + nd.name);
            return;
          }
          nd.pinged = false;
          nd.heard_ns = tracing::now_ns();
          if (!nd.alive && nd.silent) { // it woke up: fenced, it exits
            nd.silent = false;
            self->send(nd.agent, fence_atom::value, nd.lost);
            caf::aout(self) << "coordinator: node " << nd.name << " answers again; fenced "
                            << "(it exits; restart it or join it again)" << std::endl;
          }
        };
        const auto unanswered = [self, n, agent = node.agent](const caf::error&) {
          if (self->state.nodes[n].agent == agent)
            self->state.nodes[n].pinged = false;
        };
        const auto wait = std::chrono::milliseconds(st.setup.suspect_after_ms);
        // The relay answers: its mailbox carries only light traffic, where the agent's runs
        // the node's shard calls (a long attention batch is not silence).
        if (node.relay)
          self->request(node.relay, wait, stats_atom::value)
            .then([answered](const relay_stats&) { answered(); }, unanswered);
        else
          self->request(node.agent, wait, status_atom::value)
            .then([answered](const std::string&) { answered(); }, unanswered);
      }
      self->delayed_send(self, std::chrono::milliseconds(st.setup.heartbeat_ms), heartbeat_atom::value);
    },
    [=](status_atom) -> caf::result<cluster_status> {
      auto& st = self->state;
      cluster_status s;
      s.epoch = st.current;
      s.model = st.setup.model->config.name;
      s.checkpoint = st.setup.checkpoint;
      s.registry = st.registry;
      for (auto& n : st.nodes) {
        s.nodes.push_back(n.name);
        s.addresses.push_back(n.address);
        s.alive.push_back(n.alive);
        s.lost.push_back(n.lost);
      }
      s.lost_down = st.lost_down;
      s.lost_silent = st.lost_silent;
      s.experts_per_node.assign(st.nodes.size(), 0);
      if (auto e = st.epochs.find(st.current); e != st.epochs.end())
        for (std::uint32_t l = 0; l < e->second.placement.size(); ++l)
          for (size_t p = 0; p < e->second.placement[l].size(); ++p) {
            const auto n = e->second.placement[l][p];
            ++s.experts_per_node[n];
            s.experts.push_back(expert_name(l, e->second.members[l][p]) + "@" + st.nodes[n].name);
          }
      for (auto& [epoch, e] : st.epochs)
        s.live_epochs.push_back(epoch);
      s.requests_served = st.served;
      s.requests_failed = st.failed;
      s.in_flight = st.requests.size();
      s.batches = st.batches;
      if (!st.composer || !st.setup.model->config.is_lm())
        return s;
      auto rp = self->make_response_promise<cluster_status>();
      self->request(st.composer, std::chrono::seconds(2), stats_atom::value)
        .then(
          [self, rp, s](serving_stats& serving) mutable {
            s.serving = std::move(serving);
            self->request(self->state.contexts, std::chrono::seconds(2), stats_atom::value)
              .then(
                [rp, s](std::vector<std::uint64_t>& held) mutable {
                  s.serving.kv_positions = std::move(held);
                  rp.deliver(std::move(s));
                },
                [rp, s](caf::error&) mutable { rp.deliver(std::move(s)); });
          },
          [rp, s](caf::error&) mutable { rp.deliver(std::move(s)); });
      return rp;
    },
    [=](add_expert_atom, std::uint32_t layer, const std::string& node,
        const std::string& init) -> caf::result<std::uint64_t> {
      auto& st = self->state;
      if (st.current == 0 || st.changing)
        return make_mesh_error(mesh_errc::not_ready,
                               "a membership change is in progress; try again");
      const auto n = node_index(st, node);
      if (!n || !st.nodes[*n].alive)
        return change_error("add expert: no live node '" + node + "'");
      const auto& e = st.epochs.at(st.current);
      if (layer >= e.members.size())
        return change_error("add expert: the model has no layer " + std::to_string(layer));
      const auto id = st.next_id[layer];
      auto m = model_with_new_expert(st, e, layer, id, init);
      if (!m)
        return change_error("add expert " + expert_name(layer, id) + ": " + m.error().message);
      ++st.next_id[layer];
      auto model = std::make_shared<const experts::model>(std::move(*m));
      auto members = e.members;
      auto placement = e.placement;
      const auto position = static_cast<std::uint32_t>(members[layer].size());
      members[layer].push_back(id);
      placement[layer].push_back(*n);
      spawn_order order;
      order.node = node;
      order.term = st.setup.term;
      order.explicit_experts.push_back(weights_of(*model, layer, position, id));
      st.changing = true;
      auto rp = self->make_response_promise<std::uint64_t>();
      self->request(st.nodes[*n].agent, std::chrono::seconds(30), spawn_atom::value, order)
        .then(
          [self, rp, model, members, placement, layer, id, node_name = node,
           what = "expert " + expert_name(layer, id) + " added on " + node + " (init " + init
                  + ")"](spawned_node& s) mutable {
            if (s.experts.size() != 1) { // the answer may come from another process
              self->state.changing = false;
              rp.deliver(make_mesh_error(mesh_errc::internal,
                                         "add expert " + expert_name(layer, id) + ": node "
                                           + node_name + " answered with "
                                           + std::to_string(s.experts.size())
                                           + " experts for 1 ordered"));
              return;
            }
            self->state.experts[{layer, id}] = s.experts.at(0);
            publish(self, model, std::move(members), std::move(placement), what, answer(rp));
          },
          [self, rp](caf::error& err) mutable {
            self->state.changing = false;
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [=](remove_expert_atom, std::uint32_t layer,
        std::uint32_t id) -> caf::result<std::uint64_t> {
      auto& st = self->state;
      if (st.current == 0 || st.changing)
        return make_mesh_error(mesh_errc::not_ready,
                               "a membership change is in progress; try again");
      const auto& e = st.epochs.at(st.current);
      if (layer >= e.members.size())
        return change_error("remove expert: the model has no layer " + std::to_string(layer));
      const auto& ids = e.members[layer];
      const auto p = std::find(ids.begin(), ids.end(), id);
      if (p == ids.end())
        return change_error("remove expert: " + expert_name(layer, id)
                            + " is not a member of the current epoch");
      const auto position = static_cast<size_t>(p - ids.begin());
      auto m = experts::without_expert(*e.model, layer, position);
      if (!m)
        return change_error(m.error().message);
      auto members = e.members;
      auto placement = e.placement;
      members[layer].erase(members[layer].begin() + static_cast<std::ptrdiff_t>(position));
      placement[layer].erase(placement[layer].begin() + static_cast<std::ptrdiff_t>(position));
      auto rp = self->make_response_promise<std::uint64_t>();
      publish(self, std::make_shared<const experts::model>(std::move(*m)), std::move(members),
              std::move(placement), "expert " + expert_name(layer, id) + " removed", answer(rp));
      return rp;
    },
    [=](drain_atom, const std::string& node) -> caf::result<std::uint64_t> {
      auto& st = self->state;
      if (st.current == 0 || st.changing)
        return make_mesh_error(mesh_errc::not_ready,
                               "a membership change is in progress; try again");
      const auto n = node_index(st, node);
      if (!n)
        return change_error("drain node: no node '" + node + "'");
      const auto& e = st.epochs.at(st.current);
      auto m = *e.model;
      auto members = e.members;
      auto placement = e.placement;
      for (size_t l = 0; l < placement.size(); ++l)
        for (size_t p = placement[l].size(); p-- > 0;) {
          if (placement[l][p] != *n)
            continue;
          auto next = experts::without_expert(m, l, p);
          if (!next)
            return change_error("drain node " + node + ": " + next.error().message);
          m = std::move(*next);
          members[l].erase(members[l].begin() + static_cast<std::ptrdiff_t>(p));
          placement[l].erase(placement[l].begin() + static_cast<std::ptrdiff_t>(p));
        }
      auto rp = self->make_response_promise<std::uint64_t>();
      publish(self, std::make_shared<const experts::model>(std::move(m)), std::move(members),
              std::move(placement), "node " + node + " drained", answer(rp));
      return rp;
    },
    [=](join_atom, const std::string& name, const std::string& address, node_agent_actor agent,
        const std::string& secret) -> caf::result<ok_atom> {
      auto& st = self->state;
      // A cluster without a secret takes any node.
      if (!st.setup.secret.empty() && !secrets_match(secret, st.setup.secret)) {
        caf::aout(self) << "coordinator: node " << name << " (" << address
                        << ") refused: wrong or missing cluster secret" << std::endl;
        return make_mesh_error(mesh_errc::unauthorized,
                               "join refused: node '" + name
                                 + "' did not present the cluster's secret");
      }
      if (auto n = node_index(st, name); n && st.nodes[*n].alive)
        return change_error("join: a live node is called '" + name + "' already");
      auto rp = self->make_response_promise<ok_atom>();
      spawn_order order;
      order.node = name;
      order.term = st.setup.term;
      self->request(agent, std::chrono::seconds(30), spawn_atom::value, order)
        .then(
          [self, rp, name, address, agent](spawned_node& s) mutable {
            if (!s.relay) { // the answer may come from another process
              rp.deliver(make_mesh_error(mesh_errc::bad_request,
                                         "join: node '" + name + "' answered without a relay"));
              return;
            }
            auto& nodes = self->state.nodes;
            // A lost node that comes back takes its old place (and name) again.
            const auto again = node_index(self->state, name);
            registered_node node;
            node.name = name;
            node.address = address;
            node.agent = agent;
            node.relay = s.relay;
            node.data = s.data;
            node.joined = again ? nodes[*again].joined : true;
            const auto n = again && !nodes[*again].alive ? *again
                                                         : static_cast<std::uint32_t>(nodes.size());
            if (n < nodes.size())
              nodes[n] = std::move(node);
            else
              nodes.push_back(std::move(node));
            self->send(self->state.contexts, join_atom::value, n, agent);
            self->monitor(agent);
            measure_clock(self, agent, name);
            caf::aout(self) << "coordinator: node " << name << " (" << address << ") joined"
                            << std::endl;
            rp.deliver(ok_atom::value);
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](model_atom, std::uint64_t epoch) -> caf::result<std::string> {
      auto& st = self->state;
      auto i = st.history.find(epoch);
      if (i == st.history.end())
        return change_error("model: epoch " + std::to_string(epoch) + " is not kept (the last "
                            + std::to_string(history_size) + " are)");
      const auto bytes = experts::checkpoint_bytes(*i->second);
      return std::string{bytes.begin(), bytes.end()};
    },
    [=](context_atom) { return self->state.contexts; },
    [=](session_atom) -> caf::result<std::uint64_t> {
      auto rp = self->make_response_promise<std::uint64_t>();
      self->request(self->state.composer, std::chrono::seconds(60), session_atom::value)
        .then([rp](std::uint64_t id) mutable { rp.deliver(id); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](drop_atom, std::uint64_t session) -> caf::result<ok_atom> {
      auto rp = self->make_response_promise<ok_atom>();
      self->request(self->state.composer, std::chrono::seconds(60), drop_atom::value, session)
        .then([rp](ok_atom) mutable { rp.deliver(ok_atom::value); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](mute_atom, std::uint32_t layer, std::uint32_t id, bool on) -> caf::result<ok_atom> {
      auto& st = self->state;
      auto i = st.experts.find({layer, id});
      if (i == st.experts.end())
        return change_error("no expert " + expert_name(layer, id));
      return self->delegate(i->second, mute_atom::value, on);
    },
    [=](stats_atom) -> caf::result<std::vector<relay_stats>> {
      auto& st = self->state;
      auto rp = self->make_response_promise<std::vector<relay_stats>>();
      auto out = std::make_shared<std::vector<relay_stats>>(st.nodes.size());
      auto pending = std::make_shared<size_t>(1);
      auto done = [rp, out, pending]() mutable {
        if (--*pending == 0)
          rp.deliver(*out);
      };
      for (size_t n = 0; n < st.nodes.size(); ++n) {
        if (!st.nodes[n].alive)
          continue;
        ++*pending;
        self->request(st.nodes[n].relay, std::chrono::seconds(10), stats_atom::value)
          .then([out, n, done](relay_stats s) mutable {
                  (*out)[n] = s;
                  done();
                },
                [done](caf::error&) mutable { done(); });
      }
      done();
      return rp;
    },
    [=](shutdown_atom) {
      for (auto& n : self->state.nodes)
        if (n.alive)
          self->send(n.agent, shutdown_atom::value);
      self->quit(caf::exit_reason::user_shutdown); // linked: the composer ends too
    },
  };
}

} // namespace eoe::actors

