#include "actors/expert_actor.hpp"

#include "actors/data_plane.hpp"
#include "actors/deadline_message.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/trace.hpp"
#include "actors/wire.hpp"
#include "experts/model/forward.hpp"
#include "experts/nn/hash_routing.hpp"
#include "experts/nn/rms_norm.hpp"
#include "experts/nn/router.hpp"
#include "experts/nn/self_activation.hpp"
#include "experts/nn/weighted_output.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/send.hpp>

#include <chrono>

namespace eoe::actors {

std::string expert_name(std::uint32_t layer, std::uint32_t id, int step) {
  auto s = std::to_string(layer) + "." + std::to_string(id);
  if (step > 0)
    s += " (step " + std::to_string(step + 1) + ")";
  return s;
}

std::string expert_actor_name(std::uint32_t layer, std::uint32_t id) {
  return "expert " + expert_name(layer, id);
}

std::string relay_name(const std::string& node) {
  return "relay " + node;
}

std::uint64_t contribution_bytes(const contribution& c) noexcept {
  return c.rows.size() + c.scores.size() + c.y.bytes.size() + c.stream.bytes.size()
         + c.ids.size();
}

contribution contribution_of(score_share s) {
  contribution c;
  c.kind = contribution_kind::score_share;
  c.request = s.request;
  c.epoch = s.epoch;
  c.to_layer = s.layer;
  c.sender = s.expert;
  c.sender_node = std::move(s.sender_node);
  c.deadline_ms = s.deadline_ms;
  c.scores = std::move(s.scores);
  c.trace = s.trace;
  c.msg = s.msg;
  c.record = s.record;
  return c;
}

score_share share_of(contribution c) {
  score_share s;
  s.request = c.request;
  s.epoch = c.epoch;
  s.layer = c.to_layer;
  s.expert = c.sender;
  s.sender_node = std::move(c.sender_node);
  s.deadline_ms = c.deadline_ms;
  s.scores = std::move(c.scores);
  s.trace = c.trace;
  s.msg = c.msg;
  s.record = c.record;
  return s;
}

std::vector<experts::weighted_output> gated_outputs(const experts::layer_config& lc,
                                                    const std::vector<std::optional<caf::message>>& got,
                                                    size_t tokens) {
  // Every size is checked here, where the bytes come in: gate_outputs and scatter_add index
  // by them without checks (Eigen's asserts are off in a release build), so one sender's
  // short scores or narrow y would read or write past a buffer. got[0] is the carrier in
  // every caller; its stream is the one the outputs add into.
  const auto fault = [](size_t i, const std::string& what) {
    return std::invalid_argument("the contribution of sender " + std::to_string(i) + ": " + what);
  };
  const auto& stream = got.at(0)->get_as<contribution>(1).stream;
  if (stream.rows != tokens)
    throw fault(0, "its carried residual stream is (" + std::to_string(stream.rows) + ", "
                     + std::to_string(stream.cols) + "), the request has "
                     + std::to_string(tokens) + " tokens");
  std::vector<matrix> ys(got.size());
  std::vector<std::vector<std::int32_t>> rows(got.size());
  std::vector<std::vector<float>> carried(got.size());
  std::vector<experts::sender_output> senders(got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& ci = got[i]->get_as<contribution>(1);
    rows[i] = unpack<std::int32_t>(ci.rows, "contribution rows");
    carried[i] = unpack<float>(ci.scores, "contribution scores");
    if (carried[i].size() != rows[i].size())
      throw fault(i, std::to_string(rows[i].size()) + " rows but "
                       + std::to_string(carried[i].size()) + " scores");
    if (!rows[i].empty()) {
      ys[i] = from_wire(ci.y, "contribution output");
      if (static_cast<size_t>(ys[i].rows()) != rows[i].size() || ys[i].cols() != stream.cols)
        throw fault(i, "its output y is (" + std::to_string(ys[i].rows()) + ", "
                         + std::to_string(ys[i].cols()) + "), its rows and the stream want ("
                         + std::to_string(rows[i].size()) + ", " + std::to_string(stream.cols)
                         + ")");
    }
    senders[i] = {rows[i], carried[i], &ys[i]};
  }
  return experts::gate_outputs(lc, senders, tokens);
}

namespace {

using self_ptr = expert_actor::stateful_pointer<expert_state>;
using experts::layer_kind;

/// After a request's deadline the composer has answered; experts keep its leftovers this much
/// longer, then drop them.
constexpr std::chrono::milliseconds cleanup_grace{1000};

const contribution& view_of(const caf::message& m) {
  return m.get_as<contribution>(1);
}

std::string my_name(const expert_state& st) {
  return expert_name(st.spec.layer, st.spec.id);
}

/// Members of the layer that feeds unrolled layer u in epoch v: the composer alone where it
/// starts the layer (the embedding, or a language model's attention before it).
size_t senders_of(const epoch_view& v, std::uint32_t u) {
  if (v.composer_feeds(u))
    return 1;
  return static_cast<size_t>(v.config.layers[v.schedule[u - 1]].experts);
}

/// Sends a message to a typed handle without copying its payload again.
template <class Handle>
void forward_message(const Handle& dest, const caf::message& msg) {
  caf::anon_send(caf::actor_cast<caf::actor>(dest), msg);
}

/// Computes the output on the active rows and sends it to the next layer's relays (or the
/// composer), and what was decided to the composer.
void finish(self_ptr self, const epoch_view& v, std::uint64_t request, std::uint32_t u,
            layer_work& w, int position, const std::vector<std::int32_t>& rows,
            const std::vector<float>& carried) {
  auto& st = self->state;
  const auto& lc = v.config.layers[st.spec.layer];
  const trace_scope tr{w.trace, request, st.spec.node, st.actor};
  const auto layer = static_cast<std::int32_t>(u);
  const auto id = static_cast<std::int32_t>(st.spec.id);
  if (tr) {
    float mean = 0;
    for (auto x : w.scores)
      mean += x / static_cast<float>(w.scores.size());
    const auto t = tracing::now_ns();
    tr.step(rows.empty() ? trace_kind::abstain : trace_kind::activate, "decide", layer, id, t, t,
            static_cast<std::uint32_t>(rows.size()), w.scores.empty() ? std::nanf("") : mean);
  }
  contribution out;
  out.request = request;
  out.epoch = v.plan.epoch;
  out.to_layer = u + 1;
  out.sender = static_cast<std::uint32_t>(position);
  out.sender_node = st.spec.node;
  out.deadline_ms = w.deadline_ms;
  out.rows = pack(rows);
  out.scores = pack(carried);
  if (!rows.empty()) {
    matrix in(static_cast<Eigen::Index>(rows.size()), w.first_in.cols()), hidden, y;
    for (size_t r = 0; r < rows.size(); ++r)
      in.row(static_cast<Eigen::Index>(r)) = w.first_in.row(rows[r]);
    const auto t0 = tr ? tracing::now_ns() : 0;
    experts::expert_forward(*st.be, *st.spec.weights, lc.act, in, hidden, y);
    if (tr)
      tr.step(trace_kind::compute, "ffn", layer, id, t0, tracing::now_ns(),
              static_cast<std::uint32_t>(rows.size()));
    out.y = to_wire(y);
  }
  if (position == 0) { // the carrier: the stream and the ids travel on with its output
    out.stream = to_wire(w.stream);
    out.ids = w.ids;
  }
  out.record = w.record;
  expert_record rec;
  rec.request = request;
  rec.layer = u;
  rec.expert = static_cast<std::uint32_t>(position);
  rec.scores = pack(w.scores);
  rec.rows = out.rows;
  rec.carried = out.scores;
  out.trace = rec.trace = w.trace;
  if (tr) {
    out.msg = tracing::next_message_id();
    rec.msg = tracing::next_message_id();
  }
  const auto bytes = contribution_bytes(out);
  const auto msg_id = out.msg;
  const auto msg = caf::make_message(contrib_atom::value, std::move(out));
  std::shared_ptr<const outgoing_frame> frame; // encoded once if the data plane takes it
  if (!v.composer_feeds(u + 1)) {
    for (auto node : v.nodes_of_layer(v.schedule[u + 1])) {
      if (tr)
        tr.message(trace_kind::send, "contrib", relay_name(v.plan.nodes[node]), msg_id, 0, bytes,
                   layer + 1, id, tracing::now_ns());
      send_contribution(v.plan, node, self->node(), msg, frame);
    }
  } else {
    if (tr)
      tr.message(trace_kind::send, "contrib", "composer", msg_id, 0, bytes, layer + 1, id,
                 tracing::now_ns());
    // Through the head's relay when the data plane reaches it (the relay hands it on).
    if (v.plan.composer.node() != self->node())
      send_contribution(v.plan, v.plan.composer_node, self->node(), msg, frame);
    else
      forward_message(v.plan.composer, msg);
  }
  if (!w.record)
    return; // nobody asked for the decisions
  if (tr)
    tr.message(trace_kind::send, "record", "composer", rec.msg, 0,
               rec.scores.size() + rec.rows.size() + rec.carried.size(), layer, id,
               tracing::now_ns());
  self->send(v.plan.composer, record_atom::value, std::move(rec));
}

/// Top-k: every peer's ranking scores are in; decide by the shared rule.
void decide_topk(self_ptr self, const epoch_view& v, std::uint64_t request, std::uint32_t u,
                 layer_work& w, int position) {
  const auto& lc = v.config.layers[self->state.spec.layer];
  const float gate_bias = v.params[self->state.spec.layer].gate_bias(0, position);
  const auto tokens = w.scores.size();
  if (w.ranks.size() != static_cast<size_t>(lc.experts)) // the epoch's plan was replaced meanwhile
    throw std::invalid_argument("ranking scores of " + std::to_string(w.ranks.size())
                                + " experts for a layer of " + std::to_string(lc.experts)
                                + " (the plan of epoch " + std::to_string(v.plan.epoch)
                                + " changed under the request)");
  // A peer's share is sized by its sender: one that is short would be read past its end.
  for (size_t e = 0; e < w.ranks.size(); ++e)
    if (w.ranks[e].size() != tokens)
      throw std::invalid_argument(
        "the ranking scores of expert "
        + expert_name(self->state.spec.layer, v.plan.members[self->state.spec.layer].at(e))
        + " are " + std::to_string(w.ranks[e].size()) + " values, the request has "
        + std::to_string(tokens) + " tokens");
  std::vector<std::int32_t> rows;
  std::vector<float> carried, row(static_cast<size_t>(lc.experts));
  for (size_t t = 0; t < tokens; ++t) {
    for (int e = 0; e < lc.experts; ++e)
      row[e] = w.ranks[e][t];
    if (experts::active_in_topk<float>(row, position, lc.k)) {
      rows.push_back(static_cast<std::int32_t>(t));
      carried.push_back(w.scores[t] + gate_bias); // the gate logit
    }
  }
  finish(self, v, request, u, w, position, rows, carried);
}

/// Every sender of the previous layer has answered: mix, score, decide (or share scores).
void on_inputs(self_ptr self, const epoch_view& v, std::uint64_t request, std::uint32_t u,
               layer_work& w, int position) {
  auto& st = self->state;
  const auto& c = v.config;
  const auto& lc = c.layers[st.spec.layer];
  const auto& lp = v.params[st.spec.layer];
  const trace_scope tr{w.trace, request, st.spec.node, st.actor};
  const auto layer = static_cast<std::int32_t>(u);
  const auto id = static_cast<std::int32_t>(st.spec.id);
  const auto& carrier = view_of(*w.got[0]);
  const matrix h_prev = from_wire(carrier.stream, "the carried residual stream");
  const auto tokens = h_prev.rows();
  if (h_prev.cols() != c.dim) // the math below takes the width as given
    throw std::invalid_argument("the carried residual stream is (" + std::to_string(tokens)
                                + ", " + std::to_string(h_prev.cols())
                                + "), the model's is " + std::to_string(c.dim) + " wide");
  w.ids = carrier.ids;

  // The previous layer's outputs, gated as every receiver gates them.
  std::vector<experts::weighted_output> pending;
  if (!v.composer_feeds(u)) {
    pending = gated_outputs(c.layers[v.schedule[u - 1]], w.got, static_cast<size_t>(tokens));
  }
  w.stream = h_prev;
  experts::scatter_add(w.stream, pending);
  w.got.clear(); // the inputs are mixed; free them
  matrix mixed;
  const matrix* in = &w.stream;
  if (lc.affinity) {
    mixed = h_prev;
    experts::scatter_add(mixed, pending, lp.affinity.data() + position, lp.affinity.cols());
    in = &mixed;
  }
  matrix normed; // a language model's expert layers read the stream through their RMSNorm
  if (c.is_lm()) {
    std::vector<float> inv_rms;
    experts::rms_norm_forward(*in, lp.norm, normed, inv_rms);
    in = &normed;
  }

  const auto t_mixed = tr ? tracing::now_ns() : 0;
  if (tr)
    tr.step(trace_kind::merge, "mix", layer, id, w.inputs_at, t_mixed,
            static_cast<std::uint32_t>(tokens));
  std::vector<std::int32_t> rows;
  std::vector<float> carried;
  switch (lc.kind) {
    case layer_kind::eoe: {
      vector s;
      experts::expert_scores(*st.be, *st.spec.weights, lc.score_columns, *in, w.first_in, s);
      if (!st.spec.weights->factored())
        w.first_in = *in; // read after the layer's decision, when `in` may be gone
      w.scores.assign(s.data(), s.data() + s.size());
      if (tr)
        tr.step(trace_kind::compute, "score", layer, id, t_mixed, tracing::now_ns(),
                static_cast<std::uint32_t>(tokens));
      if (lc.mode == experts::activation_mode::threshold) {
        const float tau = lp.tau(0, position);
        const float gate_bias = lp.gate_bias(0, position);
        for (Eigen::Index t = 0; t < tokens; ++t)
          if (experts::active_over_threshold(w.scores[t], tau)) {
            rows.push_back(static_cast<std::int32_t>(t));
            carried.push_back(w.scores[t] + gate_bias); // the gate logit
          }
        break;
      }
      // top-k: share the ranking scores with the layer's peers, then decide.
      std::vector<float> rank(w.scores);
      const float bias = lp.select_bias(0, position);
      for (auto& r : rank)
        r += bias;
      w.ranks.resize(static_cast<size_t>(lc.experts));
      w.ranks[position] = rank;
      ++w.ranks_in;
      w.scored = true;
      if (const auto& scorers = v.scorers[st.spec.layer]; !scorers.empty()) {
        // The plan holds every member's scoring weights: rank the peers here, as each of them
        // ranks itself (the same product on the same rows), and decide with no round trip.
        matrix u_peer;
        vector s_peer;
        for (int p = 0; p < lc.experts; ++p) {
          if (p == position)
            continue;
          experts::expert_scores(*st.be, scorers.at(static_cast<size_t>(p)), lc.score_columns, *in,
                                 u_peer, s_peer);
          const float peer_bias = lp.select_bias(0, p);
          auto& r = w.ranks[static_cast<size_t>(p)];
          r.assign(s_peer.data(), s_peer.data() + s_peer.size());
          for (auto& x : r)
            x += peer_bias;
          ++w.ranks_in;
        }
        if (tr)
          tr.step(trace_kind::compute, "rank", layer, id, t_mixed, tracing::now_ns(),
                  static_cast<std::uint32_t>(tokens));
        decide_topk(self, v, request, u, w, position);
        return;
      }
      if (lc.experts > 1) {
        score_share share;
        share.request = request;
        share.epoch = v.plan.epoch;
        share.layer = u;
        share.expert = static_cast<std::uint32_t>(position);
        share.sender_node = st.spec.node;
        share.deadline_ms = w.deadline_ms;
        share.scores = pack(rank);
        share.trace = w.trace;
        share.record = w.record;
        if (tr)
          share.msg = tracing::next_message_id();
        const auto bytes = share.scores.size();
        const auto msg_id = share.msg;
        // As a contribution: to other processes over the data plane's direct links (CAF
        // routes between two non-head nodes through the head).
        const auto msg = caf::make_message(contrib_atom::value, contribution_of(std::move(share)));
        std::shared_ptr<const outgoing_frame> frame;
        for (auto node : v.nodes_of_layer(st.spec.layer)) {
          if (tr)
            tr.message(trace_kind::send, "scores", relay_name(v.plan.nodes[node]), msg_id, 0,
                       bytes, layer, id, tracing::now_ns());
          send_contribution(v.plan, node, self->node(), msg, frame);
        }
        if (w.record) { // the composer hears it is alive, waiting for its peers
          expert_record waiting;
          waiting.request = request;
          waiting.layer = u;
          waiting.expert = static_cast<std::uint32_t>(position);
          waiting.decided = false;
          waiting.trace = w.trace;
          if (tr) {
            waiting.msg = tracing::next_message_id();
            tr.message(trace_kind::send, "record", "composer", waiting.msg, 0, 0, layer, id,
                       tracing::now_ns());
          }
          self->send(v.plan.composer, record_atom::value, std::move(waiting));
        }
      }
      if (w.ranks_in == static_cast<size_t>(lc.experts))
        decide_topk(self, v, request, u, w, position);
      return;
    }
    case layer_kind::router: {
      matrix logits;
      st.be->gemm(*in, lp.router, logits);
      const auto d = experts::route_topk(logits, lc.k);
      w.first_in = *in;
      w.scores.resize(static_cast<size_t>(tokens));
      for (Eigen::Index t = 0; t < tokens; ++t) {
        w.scores[t] = d.probs(t, position);
        for (auto e : d.active.experts_of(static_cast<size_t>(t)))
          if (e == position) {
            rows.push_back(static_cast<std::int32_t>(t));
            carried.push_back(w.scores[t]);
          }
      }
      break;
    }
    case layer_kind::hash: {
      auto ids = unpack<std::uint64_t>(w.ids, "token ids");
      if (!ids.empty() && ids.size() != static_cast<size_t>(tokens)) // rows past the stream
        throw std::invalid_argument("the carried token ids are " + std::to_string(ids.size())
                                    + ", the stream has " + std::to_string(tokens) + " tokens");
      if (ids.empty()) {
        ids.resize(static_cast<size_t>(tokens));
        for (size_t t = 0; t < ids.size(); ++t)
          ids[t] = t;
      }
      const auto a = experts::route_hash(ids, lc.experts, lc.k, experts::hash_seed(c, u));
      w.first_in = *in;
      for (size_t t = 0; t < a.tokens(); ++t)
        for (auto e : a.experts_of(t))
          if (e == position) {
            rows.push_back(static_cast<std::int32_t>(t));
            carried.push_back(1.0f / static_cast<float>(lc.k));
          }
      break;
    }
    case layer_kind::dense:
      w.first_in = *in;
      for (Eigen::Index t = 0; t < tokens; ++t) {
        rows.push_back(static_cast<std::int32_t>(t));
        carried.push_back(1.0f);
      }
      break;
    case layer_kind::attention: // run by the composer (epoch_view::schedule has none)
      throw std::logic_error("expert actor: an attention layer has no experts");
  }
  finish(self, v, request, u, w, position, rows, carried);
}

void arm_timer(self_ptr self, std::uint64_t request, std::uint32_t deadline_ms) {
  auto& cleanups = self->state.cleanups;
  if (cleanups.contains(request))
    return;
  const auto now = std::chrono::steady_clock::now();
  const auto due = now + std::chrono::milliseconds(deadline_ms) + cleanup_grace;
  arm_deadline_message(self, cleanups.add(request, due), now);
}

/// The epoch's view and this expert's position in its layer, or nothing (with a note) when the
/// epoch is unknown or does not count this expert among its members.
std::pair<const epoch_view*, int> place(self_ptr self, std::uint64_t epoch, std::uint32_t layer) {
  auto& st = self->state;
  auto i = st.epochs.find(epoch);
  if (i == st.epochs.end()) {
    caf::aout(self) << my_name(st) << ": a message of unknown epoch " << epoch << " dropped"
                    << std::endl;
    return {nullptr, -1};
  }
  const auto& v = *i->second;
  if (layer >= v.schedule.size() || v.schedule[layer] != st.spec.layer)
    return {nullptr, -1};
  const int position = v.position(st.spec.layer, st.spec.id);
  return {position < 0 ? nullptr : &v, position};
}

} // namespace

expert_actor::behavior_type expert_behavior(expert_actor::stateful_pointer<expert_state> self,
                                            expert_spec spec) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.actor = expert_actor_name(st.spec.layer, st.spec.id);
  st.be = kernels::make_cpu_backend();
  return {
    [=](contrib_atom, const contribution& c) {
      auto& st = self->state;
      if (st.muted)
        return;
      const trace_scope tr{c.trace, c.request, st.spec.node, st.actor};
      const auto t_in = tr ? tracing::now_ns() : 0;
      if (tr)
        tr.message(trace_kind::receive, "contrib", relay_name(st.spec.node), c.msg, 1,
                   contribution_bytes(c), static_cast<std::int32_t>(c.to_layer),
                   static_cast<std::int32_t>(st.spec.id), t_in);
      auto [v, position] = place(self, c.epoch, c.to_layer);
      if (!v)
        return;
      arm_timer(self, c.request, c.deadline_ms);
      const std::pair<std::uint64_t, std::uint32_t> key{c.request, c.to_layer};
      auto& w = st.work[key];
      w.deadline_ms = c.deadline_ms;
      w.trace = c.trace;
      w.record = c.record;
      w.inputs_at = t_in;
      const auto expected = senders_of(*v, c.to_layer);
      // Mixed already (a top-k expert waits for its peers' shares with its inputs freed): a late
      // duplicate, which would otherwise be counted past `expected` and mixed without a carrier.
      if (w.count >= expected)
        return;
      if (w.got.empty())
        w.got.resize(expected);
      if (w.got.size() != expected) {
        caf::aout(self) << my_name(st) << ": request " << c.request << ": epoch " << c.epoch
                        << " now has " << expected << " senders to layer " << c.to_layer
                        << ", " << w.got.size() << " when its inputs started; dropped" << std::endl;
        st.work.erase(key);
        return;
      }
      if (c.sender >= expected || w.got[c.sender])
        return; // out of range or a duplicate: never mixed twice
      w.got[c.sender] = self->current_mailbox_element()->copy_content_to_message();
      if (++w.count < expected)
        return;
      try {
        on_inputs(self, *v, c.request, c.to_layer, w, position);
      } catch (const std::exception& e) {
        caf::aout(self) << my_name(st) << ": request " << c.request << ": " << e.what()
                        << std::endl;
        st.work.erase(key);
        return;
      }
      if (!w.scored || w.ranks_in == w.ranks.size())
        st.work.erase(key);
    },
    [=](scores_atom, const score_share& s) {
      auto& st = self->state;
      if (st.muted)
        return;
      if (const trace_scope tr{s.trace, s.request, st.spec.node, st.actor}; tr)
        tr.message(trace_kind::receive, "scores", relay_name(st.spec.node), s.msg, 1,
                   s.scores.size(), static_cast<std::int32_t>(s.layer),
                   static_cast<std::int32_t>(st.spec.id), tracing::now_ns());
      auto [v, position] = place(self, s.epoch, s.layer);
      if (!v || static_cast<int>(s.expert) == position)
        return; // our own share comes back through our relay
      if (!v->scorers[st.spec.layer].empty()) {
        caf::aout(self) << my_name(st) << ": request " << s.request
                        << ": a score share for a layer whose experts rank their peers "
                           "themselves, dropped"
                        << std::endl;
        return;
      }
      arm_timer(self, s.request, s.deadline_ms);
      const std::pair<std::uint64_t, std::uint32_t> key{s.request, s.layer};
      auto& w = st.work[key];
      w.trace = s.trace;
      w.record = s.record;
      const auto experts = static_cast<size_t>(v->config.layers[st.spec.layer].experts);
      if (w.ranks.empty())
        w.ranks.resize(experts);
      if (w.ranks.size() != experts) {
        caf::aout(self) << my_name(st) << ": request " << s.request << ": epoch " << s.epoch
                        << " now has " << experts << " experts in layer " << st.spec.layer << ", "
                        << w.ranks.size() << " when its scores started; dropped" << std::endl;
        st.work.erase(key);
        return;
      }
      if (s.expert >= experts || !w.ranks[s.expert].empty())
        return;
      // Bytes from a peer, maybe from the wire: a malformed share fails this request here
      // (named on the log; the composer reports it at the deadline), never the expert, which
      // its node agent is linked to.
      try {
        const auto from = "the ranking scores of expert "
                          + expert_name(st.spec.layer,
                                        v->plan.members[st.spec.layer].at(s.expert));
        w.ranks[s.expert] = unpack<float>(s.scores, from.c_str());
        if (++w.ranks_in == experts && w.scored) {
          decide_topk(self, *v, s.request, s.layer, w, position);
          st.work.erase(key);
        }
      } catch (const std::exception& e) {
        caf::aout(self) << my_name(st) << ": request " << s.request << ": " << e.what()
                        << std::endl;
        st.work.erase(key);
      }
    },
    [=](plan_atom, const mesh_plan& p) -> caf::result<ok_atom> {
      auto& st = self->state;
      std::shared_ptr<const epoch_view> view;
      try {
        view = decode_plan(p);
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request, st.actor + ": " + e.what());
      }
      // A plan that counts this expert must give its layer the shapes of its weights: the math
      // indexes by the config's sizes.
      if (st.spec.layer < view->config.layers.size()
          && view->position(st.spec.layer, st.spec.id) >= 0)
        if (auto misfit = expert_misfit(view->config, st.spec.layer, *st.spec.weights);
            !misfit.empty())
          return make_mesh_error(mesh_errc::bad_request,
                                 st.actor + ": plan of epoch " + std::to_string(p.epoch)
                                   + ": " + misfit);
      st.epochs[p.epoch] = std::move(view);
      return ok_atom::value;
    },
    [=](retire_atom, std::uint64_t epoch) { self->state.epochs.erase(epoch); },
    [=](deadline_atom, std::uint64_t armed) {
      auto& st = self->state;
      const auto now = std::chrono::steady_clock::now();
      std::optional<std::chrono::steady_clock::time_point> rearm;
      for (const auto request : st.cleanups.fire(deadline_message_time(armed), now, rearm)) {
        auto i = st.work.lower_bound({request, 0});
        while (i != st.work.end() && i->first.first == request)
          i = st.work.erase(i);
      }
      arm_deadline_message(self, rearm, now);
    },
    [=](mute_atom, bool on) {
      self->state.muted = on;
      return ok_atom::value;
    },
  };
}

} // namespace eoe::actors
