// The nodes of a cluster as the coordinator watches them: their clocks, losing one (its
// requests fail, an epoch without it), and taking back a lost node of the cluster file that
// is started again at its address, with its experts when nothing changed since.
#include "actors/coordinator_parts.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/trace.hpp"
#include "experts/model/membership.hpp"

#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace eoe::actors::coordinator_parts {

/// Measures the clock offset of a node's agent from ours in `rounds` round trips (the
/// shortest wins) and tells the agent, so that its trace events land on the head's time line.
void measure_clock(self_ptr self, node_agent_actor agent, std::string node, int rounds) {
  if (agent.node() == self->node())
    return; // the same process reads the same clock: the offset is 0, exactly
  auto samples = std::make_shared<std::vector<tracing::clock_sample>>();
  auto step = std::make_shared<std::function<void()>>();
  *step = [self, agent, node, rounds, samples, step] {
    const auto t0 = tracing::now_ns();
    self->request(agent, std::chrono::seconds(5), clock_atom::value)
      .then(
        [self, agent, node, rounds, samples, step, t0](std::int64_t t1) {
          samples->push_back({t0, t1, tracing::now_ns()});
          if (static_cast<int>(samples->size()) < rounds) {
            (*step)();
            return;
          }
          const auto offset = tracing::estimate_offset(samples->data(), samples->size());
          self->send(agent, clock_atom::value, offset);
          *step = nullptr; // breaks the cycle
        },
        [step, node](const caf::error&) { *step = nullptr; }); // a lost node: nothing to align
  };
  (*step)();
}


/// The current epoch's model and membership without the experts on node n; top-k layers keep
/// k = min(k, the experts left). Empty with `why` set when a layer would have none left.
std::optional<std::tuple<model_ptr, members_t, members_t>>
without_node(const epoch_entry& e, std::uint32_t n, const std::string& node, std::string& why) {
  auto m = *e.model;
  auto members = e.members;
  auto placement = e.placement;
  for (size_t l = 0; l < placement.size(); ++l)
    for (size_t p = placement[l].size(); p-- > 0;) {
      if (placement[l][p] != n)
        continue;
      auto& lc = m.config.layers[l];
      if (lc.experts == 1) {
        why = "layer " + std::to_string(l) + " lost its last expert with node " + node;
        return std::nullopt;
      }
      if (lc.kind != experts::layer_kind::eoe && lc.experts == 2) { // as model_config demands
        why = "layer " + std::to_string(l) + " would keep 1 expert without node " + node
              + "; a routed layer needs 2";
        return std::nullopt;
      }
      const bool picks_k = lc.kind != experts::layer_kind::eoe
                           || lc.mode == experts::activation_mode::topk;
      if (picks_k && lc.k > lc.experts - 1)
        lc.k = lc.experts - 1;
      auto next = experts::without_expert(m, l, p);
      if (!next) {
        why = next.error().message;
        return std::nullopt;
      }
      m = std::move(*next);
      members[l].erase(members[l].begin() + static_cast<std::ptrdiff_t>(p));
      placement[l].erase(placement[l].begin() + static_cast<std::ptrdiff_t>(p));
    }
  return std::make_tuple(std::make_shared<const experts::model>(std::move(m)), std::move(members),
                         std::move(placement));
}

/// A node went away (reason: what its agent's down message says): the requests that needed it
/// fail now, naming it; the registry publishes an epoch without its experts.
void lose_node(self_ptr self, std::uint32_t n, const std::string& reason) {
  auto& st = self->state;
  auto& node = st.nodes[n];
  if (!node.alive)
    return;
  node.alive = false;
  node.lost = reason;
  node.retry_ns = 0;
  node.retry_gap_ms = 0;
  self->send(st.contexts, join_atom::value, n, node_agent_actor{}); // no new shards there
  node.lost_from = st.current;
  node.without = 0;
  node.broke = false;
  if (st.current != 0)
    node.before_loss = std::make_shared<const epoch_entry>(st.epochs.at(st.current));
  caf::aout(self) << "coordinator: node " << node.name << " (" << node.address << ") lost ("
                  << reason << ")" << std::endl;
  std::vector<std::uint64_t> failed;
  for (auto it = st.requests.begin(); it != st.requests.end();) {
    auto e = st.epochs.find(it->second.epoch);
    if (e == st.epochs.end()) {
      ++it;
      continue;
    }
    const auto names = experts_on(e->second, n);
    if (names.empty()) {
      ++it;
      continue;
    }
    ++st.failed;
    it->second.rp.deliver(make_mesh_error(
      mesh_errc::node_lost, "request " + std::to_string(it->first) + ": node " + node.name + " ("
                              + node.address + ") was lost (" + reason
                              + "); the request needed its experts " + node_list(names)));
    --e->second.in_flight;
    failed.push_back(it->first);
    it = st.requests.erase(it);
  }
  for (auto id : failed)
    member_done(self, id);
  for (auto it = st.experts.begin(); it != st.experts.end();)
    it = it->second.node() == node.agent.node() ? st.experts.erase(it) : std::next(it);
  if (st.current == 0)
    return;
  std::string why;
  auto next = without_node(st.epochs.at(st.current), n, node.name, why);
  auto release = [self](const std::string& error) {
    auto& st = self->state;
    st.rebuilding.clear();
    for (auto& [req, rp] : st.held)
      if (error.empty())
        admit(self, std::move(req), rp);
      else
        rp.deliver(make_mesh_error(mesh_errc::node_lost, error));
    st.held.clear();
  };
  if (!next) {
    st.broken = why;
    node.broke = true;
    caf::aout(self) << "coordinator: " << why << "; no request can be served" << std::endl;
    release(why);
    return;
  }
  st.rebuilding = node.name;
  auto [m, members, placement] = std::move(*next);
  publish(self, m, std::move(members), std::move(placement),
          "node " + node.name + " lost (" + reason + ")",
          [self, n, release, name = node.name](caf::expected<std::uint64_t> epoch) {
            if (epoch) {
              self->state.nodes[n].without = *epoch;
              caf::aout(self) << "coordinator: epoch " << *epoch << " runs without node " << name
                              << std::endl;
              release({});
            } else {
              self->state.nodes[n].broke = true;
              self->state.broken = "no epoch without node " + name + " (lost: "
                                   + self->state.nodes[n].lost + "): " + describe(epoch.error());
              release(self->state.broken);
            }
          });
}

std::optional<std::uint32_t> node_index(const coordinator_state& st, const std::string& name) {
  for (std::uint32_t i = 0; i < st.nodes.size(); ++i)
    if (st.nodes[i].name == name)
      return i;
  return std::nullopt;
}

/// A lost node of the cluster file answers at its address again, from a fresh process (its
/// unit, or an operator, started it anew): it takes its old place. When nothing changed since
/// it was lost, its experts come back with the weights they had, in an epoch equal to the one
/// it was lost from (so outputs equal those before the loss); otherwise it is back without
/// experts and the log says why.
void take_back(self_ptr self, std::uint32_t n, node_agent_actor agent) {
  auto& st = self->state;
  // The epoch it left behind: the one without it, or (none could be made) the one it was
  // lost from, whose experts it takes back, healing the cluster.
  const auto before = st.nodes[n].before_loss;
  const auto without = st.nodes[n].without ? st.nodes[n].without : st.nodes[n].lost_from;
  const bool restore = before && without != 0 && st.current == without;
  spawn_order order;
  order.node = st.nodes[n].name;
  order.term = st.setup.term;
  order.checkpoint = st.setup.checkpoint;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> named; // its experts, in order
  if (restore)
    for (std::uint32_t l = 0; l < before->placement.size(); ++l)
      for (std::uint32_t p = 0; p < before->placement[l].size(); ++p)
        if (before->placement[l][p] == n) {
          named.emplace_back(l, before->members[l][p]);
          order.explicit_experts.push_back(weights_of(*before->model, l, p, before->members[l][p]));
        }
  if (restore)
    st.changing = true; // no other change until the restored epoch is out
  auto give_up = [self, n, restore](const std::string& why) {
    auto& st = self->state;
    st.nodes[n].retrying = false;
    if (restore)
      st.changing = false;
    caf::aout(self) << "coordinator: node " << st.nodes[n].name << " answered at "
                    << st.nodes[n].address << " but is not back: " << why << std::endl;
  };
  self->request(agent, std::chrono::seconds(30), spawn_atom::value, order)
    .then(
      [self, n, agent, before, without, named, restore, give_up](spawned_node& s) {
        auto& st = self->state;
        auto& node = st.nodes[n];
        if (!s.relay || s.experts.size() != named.size()) // the answer may come from anywhere
          return give_up("it answered its spawn order with " + std::to_string(s.experts.size())
                         + " experts" + (s.relay ? "" : " and no relay") + " for "
                         + std::to_string(named.size()) + " ordered");
        // Experts it was given but that no epoch will count go again.
        auto retire_spawned = [&] {
          for (auto& [l, id] : named)
            self->send(agent, retire_atom::value, l, id);
        };
        if (node.alive) { // it joined under its name meanwhile
          retire_spawned();
          return give_up("a node called " + node.name + " joined meanwhile");
        }
        node.retrying = false;
        const auto lost = node.lost;
        node.agent = agent;
        node.relay = s.relay;
        node.data = s.data;
        node.alive = true;
        node.lost.clear();
        node.heard_ns = 0;
        node.pinged = false;
        node.before_loss.reset();
        node.without = 0;
        const bool broke = std::exchange(node.broke, false);
        self->monitor(agent);
        measure_clock(self, agent, node.name);
        self->send(st.contexts, join_atom::value, n, agent);
        const auto back = "node " + node.name + " (" + node.address + ") is back (lost: " + lost + ")";
        if (restore)
          st.changing = false;
        if (!restore || st.current != without) {
          retire_spawned(); // another node was lost meanwhile: the epoch it left is gone
          caf::aout(self) << "coordinator: " << back
                          << (before ? ", without its experts: the membership changed since it "
                                       "was lost (add experts on it with eoe experts add)"
                                     : "")
                          << std::endl;
          return;
        }
        if (named.empty()) {
          caf::aout(self) << "coordinator: " << back << std::endl;
          return;
        }
        for (size_t i = 0; i < named.size(); ++i)
          st.experts[named[i]] = s.experts[i];
        std::string names;
        for (auto& [l, id] : named)
          names += (names.empty() ? "" : ", ") + expert_name(l, id);
        const auto what = back + "; its experts " + names + " restored";
        publish(self, before->model, before->members, before->placement, what,
                [self, what, broke](caf::expected<std::uint64_t> epoch) {
                  if (epoch) {
                    if (broke) // its loss left no epoch to serve: its return heals the cluster
                      self->state.broken.clear();
                    caf::aout(self) << "coordinator: epoch " << *epoch << ": " << what << std::endl;
                  } else
                    caf::aout(self) << "coordinator: " << what << ", but its epoch failed: "
                                    << describe(epoch.error()) << std::endl;
                });
      },
      [give_up](caf::error& err) { give_up(describe(err)); });
}

/// Tries the address of every lost node of the cluster file now and then (its unit may have
/// started it again there): 0.5 s after the loss, then twice as long each time, up to 30 s.
void retry_lost_nodes(self_ptr self) {
  auto& st = self->state;
  if (!st.setup.connector)
    return;
  const auto now = tracing::now_ns();
  if (st.changing || !st.rebuilding.empty()) // one change at a time: next heartbeat
    return;
  for (std::uint32_t n = 0; n < st.nodes.size(); ++n) {
    auto& node = st.nodes[n];
    // A silent node may still run: it is fenced when it answers a ping, and exits.
    if (n == st.setup.head || node.alive || node.silent || node.joined || node.retrying
        || now < node.retry_ns)
      continue;
    const auto colon = node.address.rfind(':');
    const auto port = colon == std::string::npos ? 0 : std::atoi(node.address.c_str() + colon + 1);
    if (port <= 0 || port > 65535)
      continue;
    node.retry_gap_ms = std::clamp<std::int64_t>(2 * node.retry_gap_ms, 500, 30'000);
    node.retry_ns = now + node.retry_gap_ms * 1'000'000;
    node.retrying = true;
    // CAF's middleman connects one address at a time, blocking (a host that is down holds it
    // for the kernel's SYN timeout, ~127 s): one try per node waits there at most, answered
    // or timed out after longer than that.
    self
      ->request(st.setup.connector, std::chrono::minutes(3), caf::connect_atom::value,
                node.address.substr(0, colon), static_cast<std::uint16_t>(port))
      .then(
        [self, n](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>& ifs) {
          auto& st = self->state;
          auto& node = st.nodes[n];
          const auto& sys = self->system();
          if (!ptr || node.alive || !sys.assignable(ifs, sys.message_types<node_agent_actor>())) {
            node.retrying = false;
            return;
          }
          if (st.changing || !st.rebuilding.empty()) { // a change began meanwhile: soon again
            node.retrying = false;
            node.retry_ns = 0;
            return;
          }
          auto agent = caf::actor_cast<node_agent_actor>(ptr);
          if (node.agent && ptr->node() == node.agent.node()) {
            // The process it was lost from, alive (its link broke): fenced, it exits, and
            // comes back fresh when its unit starts it again.
            self->send(agent, fence_atom::value, node.lost);
            node.retrying = false;
            return;
          }
          take_back(self, n, std::move(agent));
        },
        [self, n](caf::error&) { self->state.nodes[n].retrying = false; });
  }
}

} // namespace eoe::actors::coordinator_parts
