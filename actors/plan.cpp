#include "actors/plan.hpp"

#include "actors/wire.hpp"
#include "experts/base/blocks.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace eoe::actors {

namespace {

constexpr size_t layer_tensor_count = 6; // router, affinity, tau, select_bias, gate_bias, norm

matrix or_empty(const wire_tensor& t, const char* what) {
  return t.rows == 0 && t.cols == 0 ? matrix{} : from_wire(t, what);
}

wire_tensor wire_or_empty(const matrix& m) {
  return m.size() == 0 ? wire_tensor{} : to_wire(m);
}

} // namespace

int epoch_view::position(size_t l, std::uint32_t id) const {
  const auto& m = plan.members.at(l);
  const auto i = std::find(m.begin(), m.end(), id);
  return i == m.end() ? -1 : static_cast<int>(i - m.begin());
}

std::vector<std::uint32_t> epoch_view::nodes_of_layer(size_t l) const {
  std::vector<std::uint32_t> out(plan.placement.at(l).begin(), plan.placement.at(l).end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::uint32_t> expert_schedule(const experts::model_config& c) {
  std::vector<std::uint32_t> out;
  for (const auto& b : experts::blocks_of(c))
    if (!b.attention)
      out.push_back(b.layer);
  return out;
}

std::vector<std::uint32_t> epoch_view::attention_before(size_t u) const {
  std::vector<std::uint32_t> out;
  for (const auto& b : blocks)
    if (b.attention && b.unrolled == u)
      out.push_back(b.layer);
  return out;
}

bool epoch_view::composer_feeds(size_t u) const {
  return u == 0 || u >= schedule.size() || !attention_before(u).empty();
}

std::shared_ptr<const epoch_view> decode_plan(const mesh_plan& p) {
  auto v = std::make_shared<epoch_view>();
  v->plan = p;
  auto c = experts::parse_model_config(p.config, "plan of epoch " + std::to_string(p.epoch));
  if (!c)
    throw std::invalid_argument(c.error().message);
  v->config = std::move(*c);
  const auto layers = v->config.layers.size();
  const auto where = "plan of epoch " + std::to_string(p.epoch);
  // Every index the actors read from the plan is checked here: the relay reads the composer's
  // node and a relay per node unchecked on every message.
  if (p.relays.size() != p.nodes.size())
    throw std::invalid_argument(where + ": " + std::to_string(p.relays.size())
                                + " relay(s) for " + std::to_string(p.nodes.size()) + " node(s)");
  if (p.composer_node >= p.nodes.size())
    throw std::invalid_argument(where + ": composer_node " + std::to_string(p.composer_node)
                                + " but " + std::to_string(p.nodes.size()) + " node(s)");
  if (p.members.size() != layers || p.placement.size() != layers || p.layer_params.size() != layers)
    throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch)
                                + ": members, placement and parameters must cover every layer");
  for (size_t l = 0; l < layers; ++l) {
    const auto e = static_cast<size_t>(v->config.layers[l].experts);
    if (p.members[l].size() != e || p.placement[l].size() != e
        || p.layer_params[l].size() != layer_tensor_count)
      throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch) + ": layer "
                                  + std::to_string(l) + " lists the wrong number of members");
    for (auto n : p.placement[l])
      if (n >= p.nodes.size())
        throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch)
                                    + ": placement names node " + std::to_string(n));
  }
  // The experts index the layer parameters by position without checks (tau(0, position)):
  // each one the config calls for must have its shape.
  std::map<std::string, experts::tensor_shape> shapes;
  for (auto& s : experts::parameter_shapes(v->config))
    shapes[s.name] = s;
  for (size_t l = 0; l < layers; ++l) {
    experts::layer_params lp;
    const auto& t = p.layer_params[l];
    lp.router = or_empty(t[0], "plan router");
    lp.affinity = or_empty(t[1], "plan affinity");
    lp.tau = or_empty(t[2], "plan tau");
    lp.select_bias = or_empty(t[3], "plan selection bias");
    lp.gate_bias = or_empty(t[4], "plan gate bias");
    lp.norm = or_empty(t[5], "plan norm");
    const std::pair<const char*, const matrix*> named[] = {
      {"router", &lp.router},         {"affinity", &lp.affinity},   {"tau", &lp.tau},
      {"select_bias", &lp.select_bias}, {"gate_bias", &lp.gate_bias}, {"norm", &lp.norm}};
    for (auto [name, m] : named) {
      const auto s = shapes.find("layer." + std::to_string(l) + "." + name);
      if (s != shapes.end() && (m->rows() != s->second.rows || m->cols() != s->second.cols))
        throw std::invalid_argument(where + ": layer " + std::to_string(l) + "'s " + name + " is ("
                                    + std::to_string(m->rows()) + ", " + std::to_string(m->cols())
                                    + "), its config wants (" + std::to_string(s->second.rows)
                                    + ", " + std::to_string(s->second.cols) + ")");
    }
    v->params.push_back(std::move(lp));
  }
  v->scorers.resize(layers);
  if (!p.scorers.empty()) {
    if (p.scorers.size() != layers)
      throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch) + ": scorers for "
                                  + std::to_string(p.scorers.size()) + " of "
                                  + std::to_string(layers) + " layers");
    for (size_t l = 0; l < layers; ++l) {
      const auto& lc = v->config.layers[l];
      if (p.scorers[l].empty())
        continue;
      if (p.scorers[l].size() != p.members[l].size())
        throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch) + ": layer "
                                    + std::to_string(l) + " has scorers for "
                                    + std::to_string(p.scorers[l].size()) + " of "
                                    + std::to_string(p.members[l].size()) + " members");
      for (const auto& t : p.scorers[l]) {
        auto w = or_empty(t, "plan scorer");
        if (w.rows() != v->config.dim || w.cols() == 0)
          throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch) + ": a scorer of layer "
                                      + std::to_string(l) + " is (" + std::to_string(w.rows())
                                      + ", " + std::to_string(w.cols()) + "), the model is "
                                      + std::to_string(v->config.dim) + " wide");
        experts::ffn_expert e;
        (lc.rank > 0 ? e.a : e.w1) = std::move(w);
        v->scorers[l].push_back(std::move(e));
      }
    }
  }
  v->blocks = experts::blocks_of(v->config);
  v->schedule = expert_schedule(v->config);
  if (v->schedule.empty())
    throw std::invalid_argument("plan of epoch " + std::to_string(p.epoch)
                                + ": the model has no expert layer to run on the mesh");
  return v;
}

mesh_plan make_plan(std::uint64_t epoch, const experts::model& m,
                    std::vector<std::vector<std::uint32_t>> members,
                    std::vector<std::vector<std::uint32_t>> placement,
                    std::vector<std::string> nodes, std::vector<relay_actor> relays,
                    std::vector<std::string> data, composer_actor composer,
                    std::uint32_t composer_node) {
  mesh_plan p;
  p.epoch = epoch;
  p.config = experts::to_toml(m.config);
  p.nodes = std::move(nodes);
  p.relays = std::move(relays);
  p.data = std::move(data);
  p.composer = std::move(composer);
  p.composer_node = composer_node;
  p.members = std::move(members);
  p.placement = std::move(placement);
  for (auto& lp : m.layers)
    p.layer_params.push_back({wire_or_empty(lp.router), wire_or_empty(lp.affinity),
                              wire_or_empty(lp.tau), wire_or_empty(lp.select_bias),
                              wire_or_empty(lp.gate_bias), wire_or_empty(lp.norm)});
  p.scorers.resize(m.layers.size());
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const auto& lc = m.config.layers[l];
    // An affinity layer mixes each expert's own input: only the expert can score itself.
    if (lc.kind != experts::layer_kind::eoe || lc.mode != experts::activation_mode::topk
        || lc.affinity)
      continue;
    std::size_t bytes = 0;
    std::vector<wire_tensor> layer;
    for (const auto& e : m.layers[l].experts) {
      const matrix w = e.factored() ? e.a
                                    : e.w1.leftCols(std::min<Eigen::Index>(lc.score_columns,
                                                                           e.w1.cols()));
      bytes += static_cast<std::size_t>(w.size()) * sizeof(float);
      layer.push_back(to_wire(w));
    }
    if (bytes <= max_scorer_bytes)
      p.scorers[l] = std::move(layer);
  }
  return p;
}

expert_weights weights_of(const experts::model& m, std::uint32_t layer, std::uint32_t position,
                          std::uint32_t id) {
  const auto& e = m.layers.at(layer).experts.at(position);
  expert_weights w;
  w.layer = layer;
  w.id = id;
  w.tensors = {wire_or_empty(e.a), wire_or_empty(e.w1), wire_or_empty(e.b1), wire_or_empty(e.w2),
               wire_or_empty(e.b2)};
  return w;
}

experts::ffn_expert expert_from(const expert_weights& w) {
  if (w.tensors.size() != 5)
    throw std::invalid_argument("expert weights: 5 tensors (a, w1, b1, w2, b2) expected, got "
                                + std::to_string(w.tensors.size()));
  experts::ffn_expert e;
  e.a = or_empty(w.tensors[0], "expert a");
  e.w1 = or_empty(w.tensors[1], "expert w1");
  e.b1 = or_empty(w.tensors[2], "expert b1");
  e.w2 = or_empty(w.tensors[3], "expert w2");
  e.b2 = or_empty(w.tensors[4], "expert b2");
  return e;
}

std::string expert_misfit(const experts::model_config& c, size_t l, const experts::ffn_expert& e) {
  if (l >= c.layers.size())
    return "the config has no layer " + std::to_string(l);
  if (c.layers[l].kind == experts::layer_kind::attention)
    return "layer " + std::to_string(l) + " is an attention layer: it has no experts";
  // Every expert of a layer has the shapes of its expert 0.
  const auto prefix = "layer." + std::to_string(l) + ".expert.0.";
  std::map<std::string, experts::tensor_shape> want;
  for (auto& s : experts::parameter_shapes(c))
    if (s.name.starts_with(prefix))
      want[s.name.substr(prefix.size())] = s;
  const std::pair<const char*, const matrix*> named[] = {
    {"a", &e.a}, {"w1", &e.w1}, {"b1", &e.b1}, {"w2", &e.w2}, {"b2", &e.b2}};
  for (auto [name, m] : named) {
    const auto s = want.find(name);
    const Eigen::Index rows = s == want.end() ? 0 : s->second.rows;
    const Eigen::Index cols = s == want.end() ? 0 : s->second.cols;
    if (m->rows() != rows || m->cols() != cols)
      return std::string{"its "} + name + " is (" + std::to_string(m->rows()) + ", "
             + std::to_string(m->cols()) + "), layer " + std::to_string(l) + " wants ("
             + std::to_string(rows) + ", " + std::to_string(cols) + ")";
  }
  return {};
}

} // namespace eoe::actors
