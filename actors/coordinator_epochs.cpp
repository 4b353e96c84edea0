// Membership epochs: publishing one (written to the registry first when the cluster keeps
// one), retiring those nobody uses, and the first epoch (the checkpoint's experts, or a
// restarted head's last epoch).
#include "actors/coordinator_parts.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/trace.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/membership.hpp"

#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>

#include <numeric>

namespace eoe::actors::coordinator_parts {

/// Retires epochs that are neither current nor serving, and the experts no live epoch counts.
void retire_idle(self_ptr self) {
  auto& st = self->state;
  for (auto it = st.epochs.begin(); it != st.epochs.end();) {
    if (it->first == st.current || it->second.in_flight > 0) {
      ++it;
      continue;
    }
    self->send(st.composer, retire_atom::value, it->first);
    for (auto& n : st.nodes)
      if (n.alive)
        self->send(n.relay, retire_atom::value, it->first);
    it = st.epochs.erase(it);
  }
  if (st.changing)
    return; // an expert spawned for the epoch being published is in none yet
  std::set<std::pair<std::uint32_t, std::uint32_t>> live;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint32_t> where;
  for (auto& [epoch, e] : st.epochs)
    for (std::uint32_t l = 0; l < e.members.size(); ++l)
      for (size_t p = 0; p < e.members[l].size(); ++p) {
        live.insert({l, e.members[l][p]});
        where[{l, e.members[l][p]}] = e.placement[l][p];
      }
  for (auto it = st.experts.begin(); it != st.experts.end();) {
    if (live.contains(it->first)) {
      ++it;
      continue;
    }
    // Its node: from the newest epoch that had it is gone; ask every live node agent.
    for (auto& n : st.nodes)
      if (n.alive)
        self->send(n.agent, retire_atom::value, it->first.first, it->first.second);
    it = st.experts.erase(it);
  }
}

/// Writes epoch `epoch` (made by `what`) to the durable registry, if the cluster keeps one.
experts::expected<void> persist(self_ptr self, std::uint64_t epoch, const epoch_entry& e,
                                const std::string& what) {
  auto& st = self->state;
  if (!st.setup.registry)
    return {};
  registry_record r;
  r.epoch = epoch;
  r.checkpoint = st.setup.checkpoint;
  r.checkpoint_crc = st.checkpoint_crc;
  if (e.model != st.setup.model) // the checkpoint's model as it is needs no file of its own
    r.model_file = "epoch-" + std::to_string(epoch) + ".ckpt";
  for (auto& n : st.nodes)
    r.nodes.push_back({n.name, n.address, n.joined, n.lost});
  for (size_t l = 0; l < e.members.size(); ++l) {
    registry_layer layer;
    layer.members = e.members[l];
    for (auto n : e.placement[l])
      layer.placement.push_back(st.nodes[n].name);
    layer.next_id = st.next_id[l];
    r.layers.push_back(std::move(layer));
  }
  auto changes = st.changes;
  changes.push_back("epoch " + std::to_string(epoch) + ": " + what);
  while (changes.size() > registry_changes_kept)
    changes.pop_front();
  r.changes.assign(changes.begin(), changes.end());
  if (auto ok = st.setup.registry->write(r, e.model.get()); !ok)
    return ok;
  st.changes = std::move(changes);
  return {};
}

/// Hands a new epoch's plan to every live relay and the composer; once all have it, it becomes
/// the epoch new requests join. With a state_dir the epoch is written there first: a change
/// that cannot be written is refused, but an epoch without a lost node goes out regardless
/// (serving beats a stale file; the log says so).
void publish(self_ptr self, model_ptr m, members_t members, members_t placement,
             const std::string& what, done_fn done) {
  auto& st = self->state;
  st.changing = true;
  const auto epoch = ++st.last_epoch;
  std::vector<std::string> names;
  std::vector<relay_actor> relays;
  std::vector<std::string> data;
  for (auto& n : st.nodes) {
    names.push_back(n.name);
    relays.push_back(n.relay);
    data.push_back(n.data);
  }
  auto entry = std::make_shared<epoch_entry>();
  entry->model = m;
  entry->members = std::move(members);
  entry->placement = std::move(placement);
  entry->plan = make_plan(epoch, *m, entry->members, entry->placement, std::move(names),
                          std::move(relays), std::move(data), st.composer, st.setup.head);
  if (auto written = persist(self, epoch, *entry, what); !written) {
    caf::aout(self) << "coordinator: epoch " << epoch << " (" << what
                    << ") not written to the registry: " << written.error().message << std::endl;
    if (st.rebuilding.empty()) {
      --st.last_epoch;
      st.changing = false;
      done(make_mesh_error(mesh_errc::internal, "epoch " + std::to_string(epoch)
                                                  + " not published: the registry cannot be "
                                                    "written: " + written.error().message));
      return;
    }
  }
  size_t targets = 1;
  for (auto& n : st.nodes)
    targets += n.alive;
  auto pending = std::make_shared<size_t>(targets);
  auto failed = std::make_shared<bool>(false);
  auto ack = [self, epoch, entry, pending, failed, done](ok_atom) {
    if (--*pending > 0 || *failed)
      return;
    auto& st = self->state;
    st.history[epoch] = entry->model;
    while (st.history.size() > history_size)
      st.history.erase(st.history.begin());
    st.epochs[epoch] = std::move(*entry);
    st.current = std::max(st.current, epoch); // a later epoch may have been published first
    st.changing = false;
    retire_idle(self);
    done(epoch);
  };
  auto fail = [self, failed, done](caf::error& err) {
    if (*failed)
      return;
    *failed = true;
    self->state.changing = false;
    done(std::move(err));
  };
  for (auto& n : st.nodes)
    if (n.alive)
      self->request(n.relay, std::chrono::seconds(30), plan_atom::value, entry->plan).then(ack, fail);
  self->request(st.composer, std::chrono::seconds(30), plan_atom::value, entry->plan).then(ack, fail);
}


/// The first epoch: the checkpoint's experts as the cluster file places them, or a restarted
/// head's last epoch from the registry (its unreachable nodes lost, their experts out).
/// Empty with st.broken set when there is none.
std::optional<std::pair<std::uint64_t, std::string>> first_epoch(self_ptr self, epoch_entry& e) {
  auto& st = self->state;
  const auto& base = st.setup.model->config;
  if (!st.setup.resume) {
    for (auto& layer : base.layers) {
      st.next_id.push_back(static_cast<std::uint32_t>(layer.experts));
      e.members.emplace_back(static_cast<size_t>(layer.experts));
      std::iota(e.members.back().begin(), e.members.back().end(), 0u);
    }
    e.model = st.setup.model;
    e.placement = st.setup.placement;
    return std::make_pair(std::uint64_t{1}, std::string{"the checkpoint's experts as the cluster "
                                                        "file places them"});
  }
  auto& resumed = *st.setup.resume;
  const auto& r = resumed.record;
  e.model = r.model_file.empty() ? st.setup.model
                                 : std::make_shared<const experts::model>(std::move(resumed.model));
  for (auto& layer : r.layers) {
    st.next_id.push_back(layer.next_id);
    e.members.push_back(layer.members);
    auto& where = e.placement.emplace_back();
    for (auto& name : layer.placement) {
      auto n = node_index(st, name);
      if (!n) {
        st.broken = "the registry places experts on node " + name + ", which the head does not know";
        return std::nullopt;
      }
      where.push_back(*n);
    }
  }
  st.changes.assign(r.changes.begin(), r.changes.end());
  auto epoch = r.epoch;
  std::string what = "resumed by head " + st.nodes[st.setup.head].name;
  for (std::uint32_t n = 0; n < st.nodes.size(); ++n) {
    auto& node = st.nodes[n];
    if (node.agent)
      continue;
    node.alive = false;
    node.lost = n < st.setup.absent.size() && !st.setup.absent[n].empty()
                  ? st.setup.absent[n]
                  : "not reachable when the head resumed epoch " + std::to_string(r.epoch);
    if (experts_on(e, n).empty())
      continue;
    std::string why;
    auto next = without_node(e, n, node.name, why);
    if (!next) {
      st.broken = "cannot resume epoch " + std::to_string(r.epoch) + ": " + why;
      return std::nullopt;
    }
    std::tie(e.model, e.members, e.placement) = std::move(*next);
    epoch = r.epoch + 1;
    what = "resumed by head " + st.nodes[st.setup.head].name + " without node " + node.name + " (" + node.lost + ")";
  }
  caf::aout(self) << "coordinator: resuming epoch " << r.epoch << " from the registry in "
                  << st.setup.registry->describe() << std::endl;
  st.registry += ", resumed epoch " + std::to_string(r.epoch);
  return std::make_pair(epoch, what);
}

/// Spawns the first epoch's experts on every live node (a node that survived the last head
/// keeps those it hosts: actors/node_agent.cpp), then publishes it.
void start_first_epoch(self_ptr self) {
  auto& st = self->state;
  if (st.setup.registry) {
    st.checkpoint_crc = model_crc(*st.setup.model);
    st.registry = st.setup.registry->describe();
  }
  auto first = std::make_shared<epoch_entry>();
  auto made = first_epoch(self, *first);
  if (!made) {
    caf::aout(self) << "coordinator: " << st.broken << std::endl;
    return;
  }
  const auto& base = st.setup.model->config;
  std::vector<std::uint32_t> live;
  for (std::uint32_t n = 0; n < st.nodes.size(); ++n)
    if (st.nodes[n].alive)
      live.push_back(n);
  auto pending = std::make_shared<size_t>(live.size());
  for (auto n : live) {
    spawn_order order;
    order.node = st.nodes[n].name;
    order.term = st.setup.term;
    order.checkpoint = st.setup.checkpoint;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> named; // explicit ones, in order
    for (std::uint32_t l = 0; l < first->placement.size(); ++l)
      for (std::uint32_t p = 0; p < first->placement[l].size(); ++p) {
        if (first->placement[l][p] != n)
          continue;
        const auto id = first->members[l][p];
        if (id < static_cast<std::uint32_t>(base.layers[l].experts)) {
          order.experts.emplace_back(l, id); // the checkpoint's own expert
        } else {
          order.explicit_experts.push_back(weights_of(*first->model, l, p, id)); // hot-added
          named.emplace_back(l, id);
        }
      }
    self->request(st.nodes[n].agent, std::chrono::seconds(60), spawn_atom::value, order)
      .then(
        [self, n, pending, order, named, first, made = *made](spawned_node& s) {
          auto& st = self->state;
          // The answer may come from another process: one expert for each one ordered.
          if (s.experts.size() != order.experts.size() + named.size() || !s.relay) {
            st.broken = "node " + st.nodes[n].name + " answered its spawn order with "
                        + std::to_string(s.experts.size()) + " experts"
                        + (s.relay ? "" : " and no relay") + " for "
                        + std::to_string(order.experts.size() + named.size()) + " ordered";
            caf::aout(self) << "coordinator: " << st.broken << std::endl;
            return;
          }
          st.nodes[n].relay = s.relay;
          st.nodes[n].data = s.data;
          for (size_t i = 0; i < order.experts.size(); ++i)
            st.experts[order.experts[i]] = s.experts[i];
          for (size_t i = 0; i < named.size(); ++i)
            st.experts[named[i]] = s.experts[order.experts.size() + i];
          if (--*pending > 0)
            return;
          st.last_epoch = made.first - 1;
          publish(self, first->model, first->members, first->placement, made.second,
                  [self](caf::expected<std::uint64_t> epoch) {
                    if (!epoch)
                      self->state.broken = "the first plan failed: " + describe(epoch.error());
                  });
        },
        [self, n](const caf::error& err) {
          self->state.broken = "node " + self->state.nodes[n].name
                               + " could not spawn its experts: " + describe(err);
          caf::aout(self) << "coordinator: " << self->state.broken << std::endl;
        });
  }
}

} // namespace eoe::actors::coordinator_parts
