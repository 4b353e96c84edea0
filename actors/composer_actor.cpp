#include "actors/composer_actor.hpp"

#include "actors/data_plane.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/trace.hpp"
#include "actors/wire.hpp"
#include "experts/weighted_output.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/send.hpp>

namespace eoe::actors {

namespace {

using self_ptr = composer_actor::stateful_pointer<composer_state>;
using experts::layer_kind;

/// The stable name of the member at `position` of the layer run as unrolled layer u.
std::string member_name(const epoch_view& v, std::uint32_t u, size_t position, int step) {
  const auto l = v.schedule[u];
  return expert_name(l, v.plan.members[l][position], step);
}

/// The activation record of unrolled layer u, from every member's decision.
wire_layer_record assemble_record(const pending_request& p, std::uint32_t u) {
  const auto& v = *p.view;
  const auto& lc = v.config.layers[v.schedule[u]];
  const auto experts = static_cast<size_t>(lc.experts);
  const auto tokens = static_cast<size_t>(p.tokens);
  wire_layer_record out;
  out.kind = static_cast<std::uint8_t>(lc.kind);
  std::vector<std::vector<std::int32_t>> rows(experts);
  std::vector<std::vector<float>> carried(experts);
  matrix scores;
  const bool scored = lc.kind == layer_kind::eoe || lc.kind == layer_kind::router;
  if (scored)
    scores.resize(p.tokens, static_cast<Eigen::Index>(experts));
  for (size_t e = 0; e < experts; ++e) {
    const auto& r = *p.records[u][e];
    rows[e] = unpack<std::int32_t>(r.rows, "record rows");
    carried[e] = unpack<float>(r.carried, "record carried values");
    if (scored) {
      auto s = unpack<float>(r.scores, "record scores");
      if (s.size() != tokens)
        throw std::invalid_argument("the record of expert " + member_name(v, u, e, 0) + " has "
                                    + std::to_string(s.size()) + " scores for "
                                    + std::to_string(tokens) + " tokens");
      for (size_t t = 0; t < tokens; ++t)
        scores(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(e)) = s[t];
    }
  }
  // Per token: the experts active on it, ascending, and the gates everyone computes alike.
  std::vector<std::vector<std::pair<std::int32_t, float>>> at(tokens);
  for (size_t e = 0; e < experts; ++e)
    for (size_t r = 0; r < rows[e].size(); ++r)
      at[static_cast<size_t>(rows[e][r])].emplace_back(static_cast<std::int32_t>(e), carried[e][r]);
  std::vector<std::int32_t> offsets{0}, active;
  std::vector<float> gates, c, g;
  for (auto& entries : at) {
    c.clear();
    for (auto& [e, val] : entries) {
      active.push_back(e);
      c.push_back(val);
    }
    g.resize(c.size());
    experts::token_gates(lc, c, g);
    gates.insert(gates.end(), g.begin(), g.end());
    offsets.push_back(static_cast<std::int32_t>(active.size()));
  }
  if (scored)
    out.scores = to_wire(scores);
  out.offsets = pack(offsets);
  out.experts = pack(active);
  out.gates = pack(gates);
  return out;
}

void try_complete(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  auto it = st.pending.find(id);
  if (it == st.pending.end())
    return;
  auto& p = it->second;
  if (p.outputs_in < p.outputs.size() || (p.want_record && p.records_in < p.records_expected))
    return;
  const auto& m = *st.model;
  const auto& v = *p.view;
  const trace_scope tr{p.trace, id, st.node, "composer"};
  const auto t0 = tr ? tracing::now_ns() : 0;
  infer_result res;
  res.request = id;
  res.epoch = v.plan.epoch;
  res.trace_id = p.trace;
  try {
    const auto& carrier = p.outputs[0]->get_as<contribution>(1);
    matrix h = from_wire(carrier.stream, "the carried residual stream");
    std::vector<matrix> ys(p.outputs.size());
    std::vector<std::vector<std::int32_t>> rows(p.outputs.size());
    std::vector<std::vector<float>> carried(p.outputs.size());
    std::vector<experts::sender_output> senders(p.outputs.size());
    for (size_t i = 0; i < p.outputs.size(); ++i) {
      const auto& ci = p.outputs[i]->get_as<contribution>(1);
      rows[i] = unpack<std::int32_t>(ci.rows, "contribution rows");
      carried[i] = unpack<float>(ci.scores, "contribution scores");
      if (!rows[i].empty())
        ys[i] = from_wire(ci.y, "contribution output");
      senders[i] = {rows[i], carried[i], &ys[i]};
    }
    experts::scatter_add(h, experts::gate_outputs(v.config.layers[v.schedule.back()], senders,
                                                  static_cast<size_t>(p.tokens)));
    matrix out;
    if (m.config.classes > 0) {
      st.be->gemm(h, m.head_w, out);
      st.be->add_bias(out, m.head_b);
    } else {
      out = std::move(h);
    }
    res.output = to_wire(out);
    if (p.want_record)
      for (std::uint32_t u = 0; u < v.schedule.size(); ++u)
        res.layers.push_back(assemble_record(p, u));
  } catch (const std::exception& e) {
    p.rp.deliver(make_mesh_error(mesh_errc::internal,
                                 "request " + std::to_string(id) + ": " + e.what()));
    st.pending.erase(it);
    return;
  }
  if (tr) {
    const auto t1 = tracing::now_ns();
    tr.step(trace_kind::merge, "head", static_cast<std::int32_t>(v.schedule.size()), -1, t0, t1,
            static_cast<std::uint32_t>(p.tokens));
    res.trace_msg = tracing::next_message_id();
    tr.message(trace_kind::send, "result", "coordinator", res.trace_msg, 0,
               res.output.bytes.size(), -1, -1, t1);
  }
  p.rp.deliver(std::move(res));
  st.pending.erase(it);
}

/// Who did not answer in time: the first layer with a missing decision (the silent experts,
/// else those that never decided), else the last layer's missing outputs.
std::string missing_report(const pending_request& p, std::uint64_t id) {
  const auto& v = *p.view;
  const auto budget = " within " + std::to_string(p.deadline_ms) + " ms";
  std::vector<int> step_of(v.schedule.size(), 0);
  for (size_t u = 1; u < v.schedule.size(); ++u)
    step_of[u] = v.schedule[u] == v.schedule[u - 1] ? step_of[u - 1] + 1 : 0;
  for (std::uint32_t u = 0; u < v.schedule.size(); ++u) {
    std::string silent, undecided;
    for (size_t e = 0; e < p.records[u].size(); ++e) {
      if (p.records[u][e])
        continue;
      auto& list = p.heard[u][e] ? undecided : silent;
      list += (list.empty() ? "" : ", ") + member_name(v, u, e, step_of[u]);
    }
    const auto& names = silent.empty() ? undecided : silent;
    if (!names.empty())
      return "request " + std::to_string(id) + ": layer " + std::to_string(v.schedule[u])
             + (step_of[u] ? " (step " + std::to_string(step_of[u] + 1) + ")" : "")
             + (silent.empty() ? ": no decision from expert" : ": no answer from expert")
             + (names.find(',') == std::string::npos ? " " : "s ") + names + budget;
  }
  std::string names;
  for (size_t e = 0; e < p.outputs.size(); ++e)
    if (!p.outputs[e])
      names += (names.empty() ? "" : ", ")
               + member_name(v, static_cast<std::uint32_t>(v.schedule.size() - 1), e,
                             step_of.back());
  return "request " + std::to_string(id) + ": the outputs of expert(s) " + names
         + " of the last layer did not reach the composer" + budget;
}

} // namespace

composer_actor::behavior_type
composer_behavior(composer_actor::stateful_pointer<composer_state> self,
                  std::shared_ptr<const experts::model> model, std::string node) {
  auto& st = self->state;
  st.model = std::move(model);
  st.node = std::move(node);
  st.be = kernels::make_cpu_backend();
  self->set_exception_handler([self](std::exception_ptr& eptr) -> caf::error {
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      caf::aout(self) << "composer: unexpected exception: " << e.what() << std::endl;
      return make_mesh_error(mesh_errc::internal, e.what());
    }
  });
  return {
    [=](infer_atom, std::uint64_t id, std::uint64_t epoch,
        const infer_request& req) -> caf::result<infer_result> {
      auto& st = self->state;
      const auto& m = *st.model;
      auto ev = st.epochs.find(epoch);
      if (ev == st.epochs.end())
        return make_mesh_error(mesh_errc::not_ready,
                               "the composer has no plan for epoch " + std::to_string(epoch));
      const auto& v = *ev->second;
      const trace_scope tr{req.trace_id, id, st.node, "composer"};
      if (tr)
        tr.message(trace_kind::receive, "infer", "coordinator", req.trace_msg, 0,
                   req.tokens.bytes.size() + req.ids.size(), -1, -1, tracing::now_ns());
      const auto t_embed = tr ? tracing::now_ns() : 0;
      const int in_dim = m.config.input_dim > 0 ? m.config.input_dim : m.config.dim;
      matrix x;
      try {
        x = from_wire(req.tokens, "request tokens");
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request,
                               "request " + std::to_string(id) + ": " + e.what());
      }
      if (x.rows() == 0 || x.cols() != in_dim)
        return make_mesh_error(mesh_errc::bad_request,
                               "request " + std::to_string(id) + ": tokens are ("
                                 + std::to_string(x.rows()) + ", " + std::to_string(x.cols())
                                 + "), the model takes (T >= 1, " + std::to_string(in_dim) + ")");
      if (!req.ids.empty() && req.ids.size() != static_cast<size_t>(x.rows()) * 8)
        return make_mesh_error(mesh_errc::bad_request,
                               "request " + std::to_string(id) + ": "
                                 + std::to_string(req.ids.size() / 8) + " token ids for "
                                 + std::to_string(x.rows()) + " tokens");
      matrix h;
      if (m.config.input_dim > 0) {
        st.be->gemm(x, m.embed_w, h);
        st.be->add_bias(h, m.embed_b);
      } else {
        h = std::move(x);
      }
      if (tr)
        tr.step(trace_kind::compute, "embed", -1, -1, t_embed, tracing::now_ns(),
                static_cast<std::uint32_t>(h.rows()));
      auto& p = st.pending[id];
      p.trace = req.trace_id;
      p.rp = self->make_response_promise<infer_result>();
      p.view = ev->second;
      p.tokens = h.rows();
      p.want_record = req.want_record;
      p.deadline_ms = req.deadline_ms;
      p.outputs.resize(static_cast<size_t>(v.config.layers[v.schedule.back()].experts));
      p.records.resize(v.schedule.size());
      p.heard.resize(v.schedule.size());
      for (size_t u = 0; u < v.schedule.size(); ++u) {
        p.records[u].resize(static_cast<size_t>(v.config.layers[v.schedule[u]].experts));
        p.heard[u].assign(p.records[u].size(), false);
        p.records_expected += p.records[u].size();
      }
      contribution start;
      start.request = id;
      start.epoch = epoch;
      start.to_layer = 0;
      start.sender = 0;
      start.sender_node = st.node;
      start.deadline_ms = req.deadline_ms;
      start.stream = to_wire(h);
      start.ids = req.ids;
      start.trace = req.trace_id;
      if (tr)
        start.msg = tracing::next_message_id();
      const auto bytes = start.stream.bytes.size() + start.ids.size();
      const auto msg_id = start.msg;
      const auto msg = caf::make_message(contrib_atom::value, std::move(start));
      std::shared_ptr<const outgoing_frame> frame;
      for (auto n : v.nodes_of_layer(v.schedule[0])) {
        if (tr)
          tr.message(trace_kind::send, "contrib", relay_name(v.plan.nodes[n]), msg_id, 0, bytes,
                     0, -1, tracing::now_ns());
        send_contribution(v.plan, n, self->node(), msg, frame);
      }
      self->delayed_send(self, std::chrono::milliseconds(req.deadline_ms), deadline_atom::value,
                         id);
      return p.rp;
    },
    [=](contrib_atom, const contribution& c) {
      auto& st = self->state;
      auto it = st.pending.find(c.request);
      if (it == st.pending.end() || c.to_layer != it->second.view->schedule.size())
        return; // late (answered already) or misrouted
      auto& p = it->second;
      if (const trace_scope tr{c.trace, c.request, st.node, "composer"}; tr) {
        const auto& v = *p.view;
        const auto l = v.schedule.back();
        tr.message(trace_kind::receive, "contrib",
                   c.sender < v.plan.members[l].size()
                     ? expert_actor_name(l, v.plan.members[l][c.sender])
                     : "?",
                   c.msg, 0, contribution_bytes(c), static_cast<std::int32_t>(c.to_layer), -1,
                   tracing::now_ns());
      }
      if (c.sender >= p.outputs.size() || p.outputs[c.sender])
        return;
      p.outputs[c.sender] = self->current_mailbox_element()->copy_content_to_message();
      ++p.outputs_in;
      try_complete(self, c.request);
    },
    [=](record_atom, expert_record& r) {
      auto& st = self->state;
      auto it = st.pending.find(r.request);
      if (it == st.pending.end())
        return;
      auto& p = it->second;
      if (const trace_scope tr{r.trace, r.request, st.node, "composer"}; tr) {
        const auto& v = *p.view;
        const auto l = r.layer < v.schedule.size() ? v.schedule[r.layer] : 0;
        tr.message(trace_kind::receive, "record",
                   r.expert < v.plan.members[l].size()
                     ? expert_actor_name(l, v.plan.members[l][r.expert])
                     : "?",
                   r.msg, 0, r.scores.size() + r.rows.size() + r.carried.size(),
                   static_cast<std::int32_t>(r.layer), -1, tracing::now_ns());
      }
      if (r.layer >= p.records.size() || r.expert >= p.records[r.layer].size()
          || p.records[r.layer][r.expert])
        return;
      p.heard[r.layer][r.expert] = true;
      if (!r.decided)
        return;
      p.records[r.layer][r.expert] = std::move(r);
      ++p.records_in;
      try_complete(self, it->first);
    },
    [=](plan_atom, const mesh_plan& plan) -> caf::result<ok_atom> {
      try {
        self->state.epochs[plan.epoch] = decode_plan(plan);
      } catch (const std::exception& e) {
        return caf::make_error(caf::sec::invalid_argument, e.what());
      }
      return ok_atom::value;
    },
    [=](retire_atom, std::uint64_t epoch) { self->state.epochs.erase(epoch); },
    [=](deadline_atom, std::uint64_t id) {
      auto& st = self->state;
      auto it = st.pending.find(id);
      if (it == st.pending.end())
        return;
      it->second.rp.deliver(
        make_mesh_error(mesh_errc::deadline_exceeded, missing_report(it->second, id)));
      st.pending.erase(it);
    },
  };
}

} // namespace eoe::actors
