#include "actors/composer_actor.hpp"

#include "actors/data_plane.hpp"
#include "actors/deadline_message.hpp"
#include "actors/mesh_errc.hpp"
#include "actors/trace.hpp"
#include "actors/wire.hpp"
#include "experts/model/forward.hpp"
#include "experts/nn/attention.hpp"
#include "experts/nn/rms_norm.hpp"
#include "experts/nn/weighted_output.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_ostream.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/send.hpp>

#include <functional>

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
  const auto l = v.schedule[u];
  const auto& lc = v.config.layers[l];
  const auto experts = static_cast<size_t>(lc.experts);
  const auto tokens = static_cast<size_t>(p.tokens);
  const auto& members = v.plan.members[l]; // decode_plan checked: one per expert
  wire_layer_record out;
  out.kind = static_cast<std::uint8_t>(lc.kind);
  out.layer = l;
  out.members = pack(members);
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
    // An expert's record may come from another process: its rows index the tokens below.
    if (carried[e].size() != rows[e].size())
      throw std::invalid_argument("the record of expert " + member_name(v, u, e, 0) + " has "
                                  + std::to_string(rows[e].size()) + " rows but "
                                  + std::to_string(carried[e].size()) + " carried values");
    for (auto t : rows[e])
      if (t < 0 || static_cast<size_t>(t) >= tokens)
        throw std::invalid_argument("the record of expert " + member_name(v, u, e, 0)
                                    + " has row " + std::to_string(t) + ", outside the request's "
                                    + std::to_string(tokens) + " tokens");
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
  // Per token: the experts active on it, in position order, named by their stable ids (as
  // the topology names them), and the gates everyone computes alike.
  std::vector<std::vector<std::pair<std::int32_t, float>>> at(tokens);
  for (size_t e = 0; e < experts; ++e)
    for (size_t r = 0; r < rows[e].size(); ++r)
      at[static_cast<size_t>(rows[e][r])].emplace_back(static_cast<std::int32_t>(members[e]),
                                                       carried[e][r]);
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

/// A slot for every member's decision of every unrolled layer of p's epoch.
void expect_records(pending_request& p) {
  const auto& v = *p.view;
  p.records.resize(v.schedule.size());
  p.heard.resize(v.schedule.size());
  for (size_t u = 0; u < v.schedule.size(); ++u) {
    p.records[u].resize(static_cast<size_t>(v.config.layers[v.schedule[u]].experts));
    p.heard[u].assign(p.records[u].size(), false);
    p.records_expected += p.records[u].size();
  }
}

/// Sets a timer of the composer's (one delayed message covers them all: see deadline_set).
void arm(self_ptr self, composer_timer_key key, std::chrono::steady_clock::duration after) {
  const auto now = std::chrono::steady_clock::now();
  arm_deadline_message(self, self->state.timers.add(key, now + after), now);
}

/// A session going idle is closed unless a request starts within setup.session_idle.
void arm_idle_timer(self_ptr self, std::uint64_t id, lm_session& s) {
  s.last_fed = std::chrono::steady_clock::now();
  if (const auto idle = self->state.setup.session_idle; idle.count() > 0)
    arm(self, {composer_timer::idle, id}, idle);
}

/// Closes a session: its contexts (and their shards) go.
void close_session(self_ptr self, std::map<std::uint64_t, lm_session>::iterator s) {
  auto& st = self->state;
  for (auto context : s->second.contexts)
    if (context != 0)
      caf::anon_send(st.setup.contexts, drop_atom::value, context);
  st.sessions.erase(s);
}

std::string session_gone(const composer_state& st, std::uint64_t id) {
  return "session " + std::to_string(id)
         + (st.expired.contains(id)
              ? " was closed: no request fed it for "
                  + std::to_string(st.setup.session_idle.count()) + " ms"
              : " is not open");
}

void pump(self_ptr self);
void run_stage(self_ptr self, std::uint64_t id, std::uint32_t u, size_t done);

std::string fault(std::uint64_t id, const std::string& what) {
  return "request " + std::to_string(id) + ": " + what;
}

/// Whether feed f still runs in step `step` (it did not fail meanwhile).
bool runs_in(const composer_state& st, std::uint64_t f, std::uint64_t step) {
  const auto it = st.feeds.find(f);
  return it != st.feeds.end() && it->second.step == step;
}

/// A feed ends (answered or failed): its session may take the next one.
void end_feed(self_ptr self, std::map<std::uint64_t, lm_feed>::iterator it,
              const std::string& broke = {}) {
  auto& st = self->state;
  if (auto s = st.sessions.find(it->second.session); s != st.sessions.end()) {
    s->second.busy = false;
    if (!broke.empty() && s->second.broken.empty())
      s->second.broken = broke;
    arm_idle_timer(self, s->first, s->second);
  }
  st.timers.erase({composer_timer::deadline, it->first});
  st.scheduler.drop(it->first);
  st.feeds.erase(it);
}

/// A step none of whose feeds runs any more leaves: its late messages are ignored.
void drop_step_if_empty(self_ptr self, std::uint64_t step) {
  auto& st = self->state;
  auto it = st.pending.find(step);
  if (it == st.pending.end() || it->second.step.slices.empty())
    return;
  for (const auto& s : it->second.step.slices)
    if (runs_in(st, s.feed, step))
      return;
  st.scheduler.finished(it->second.step);
  st.pending.erase(it);
  pump(self);
}

/// Answers a feed with an error; its session, whose contexts may hold some of its tokens, is
/// broken. The other feeds of its step go on.
void fail_feed(self_ptr self, std::uint64_t id, caf::error err) {
  auto& st = self->state;
  auto it = st.feeds.find(id);
  if (it == st.feeds.end())
    return;
  const auto step = it->second.step;
  const auto why = describe(err);
  it->second.rp.deliver(std::move(err));
  end_feed(self, it, "request " + std::to_string(id) + " failed while feeding it (" + why
                       + "); open a new session");
  if (step != 0)
    drop_step_if_empty(self, step);
}

/// Fails request `id` in the mesh: a classifier request, or every feed of a step (each named
/// by its own request id).
void fail_request(self_ptr self, std::uint64_t id, mesh_errc code, const std::string& what) {
  auto& st = self->state;
  auto it = st.pending.find(id);
  if (it == st.pending.end())
    return;
  if (it->second.step.slices.empty()) {
    it->second.rp.deliver(make_mesh_error(code, fault(id, what)));
    st.pending.erase(it);
    st.timers.erase({composer_timer::deadline, id});
    return;
  }
  const auto slices = it->second.step.slices; // failing the last feed drops the step
  for (const auto& s : slices)
    if (runs_in(st, s.feed, id))
      fail_feed(self, s.feed, make_mesh_error(code, fault(s.feed, what)));
  drop_step_if_empty(self, id);
}

/// A step's head has run: each feed takes its rows of the logits; those whose last tokens
/// ran are answered, the others wait for their next chunk; the next steps leave.
void finish_step(self_ptr self, std::map<std::uint64_t, pending_request>::iterator it,
                 std::vector<wire_layer_record> layers) {
  auto& st = self->state;
  const auto id = it->first;
  auto& p = it->second;
  const matrix& out = *p.output;
  for (const auto& s : p.step.slices) {
    if (!runs_in(st, s.feed, id))
      continue;
    auto& f = st.feeds.at(s.feed);
    f.logits.middleRows(s.first, s.count) = out.middleRows(s.row, s.count);
    f.step = 0;
  }
  const auto step = std::move(p.step);
  const auto trace = p.trace;
  const auto started = p.started_ns;
  st.pending.erase(it);
  ++st.stats.steps;
  st.stats.step_tokens += step.tokens;
  st.stats.max_step = std::max<std::uint64_t>(st.stats.max_step, step.tokens);
  st.stats.count_step(step.tokens);
  st.stats.step_ns += static_cast<std::uint64_t>(tracing::now_ns() - started);
  for (const auto done : st.scheduler.finished(step)) {
    auto f = st.feeds.find(done);
    if (f == st.feeds.end())
      continue;
    auto& feed = f->second;
    infer_result res;
    res.request = done;
    res.epoch = feed.view->plan.epoch;
    res.trace_id = feed.trace;
    res.output = to_wire(feed.logits);
    if (step.alone)
      res.layers = std::move(layers); // the feed ran whole in this step
    if (const trace_scope tr{trace, done, st.node, "composer"}; tr) {
      res.trace_msg = tracing::next_message_id();
      tr.message(trace_kind::send, "result", "coordinator", res.trace_msg, 0,
                 res.output.bytes.size(), -1, -1, tracing::now_ns());
    }
    if (auto s = st.sessions.find(feed.session); s != st.sessions.end())
      s->second.position += static_cast<std::uint64_t>(feed.logits.rows());
    feed.rp.deliver(std::move(res));
    end_feed(self, f);
  }
  pump(self);
}

/// Delivers the answer once the head has run and (when asked) every decision is in.
void try_complete(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  auto it = st.pending.find(id);
  if (it == st.pending.end())
    return;
  auto& p = it->second;
  if (!p.output || (p.want_record && p.records_in < p.records_expected))
    return;
  const auto& v = *p.view;
  std::vector<wire_layer_record> layers;
  try {
    if (p.want_record)
      for (std::uint32_t u = 0; u < v.schedule.size(); ++u)
        layers.push_back(assemble_record(p, u));
  } catch (const std::exception& e) {
    fail_request(self, id, mesh_errc::internal, e.what());
    return;
  }
  if (!p.step.slices.empty()) {
    finish_step(self, it, std::move(layers));
    return;
  }
  infer_result res;
  res.request = id;
  res.epoch = v.plan.epoch;
  res.trace_id = p.trace;
  res.output = to_wire(*p.output);
  res.layers = std::move(layers);
  if (const trace_scope tr{p.trace, id, st.node, "composer"}; tr) {
    res.trace_msg = tracing::next_message_id();
    tr.message(trace_kind::send, "result", "coordinator", res.trace_msg, 0,
               res.output.bytes.size(), -1, -1, tracing::now_ns());
  }
  p.rp.deliver(std::move(res));
  st.pending.erase(it);
  st.timers.erase({composer_timer::deadline, id});
}

/// The head on the final stream: a classifier's logits, a language model's next-token logits
/// (through its final RMSNorm), or the stream itself.
void run_head(self_ptr self, std::uint64_t id, pending_request& p) {
  auto& st = self->state;
  const auto& m = *st.model;
  const trace_scope tr{p.trace, id, st.node, "composer"};
  const auto t0 = tr ? tracing::now_ns() : 0;
  p.output = experts::model_head(*st.be, m, std::move(p.stream));
  p.stream = matrix{};
  if (tr)
    tr.step(trace_kind::merge, "head", static_cast<std::int32_t>(p.view->schedule.size()), -1, t0,
            tracing::now_ns(), static_cast<std::uint32_t>(p.tokens));
  try_complete(self, id);
}

/// Sends the stream to the experts of unrolled layer u (from the composer: sender 0, no
/// outputs of its own) and waits for the outputs of the next layer the composer starts.
void start_layer(self_ptr self, std::uint64_t id, pending_request& p, std::uint32_t u) {
  auto& st = self->state;
  const auto& v = *p.view;
  const trace_scope tr{p.trace, id, st.node, "composer"};
  auto next = u + 1;
  while (!v.composer_feeds(next))
    ++next;
  p.to_layer = next;
  p.outputs.assign(static_cast<size_t>(v.config.layers[v.schedule[next - 1]].experts),
                   std::nullopt);
  p.outputs_in = 0;
  contribution start;
  start.request = id;
  start.epoch = v.plan.epoch;
  start.to_layer = u;
  start.sender = 0;
  start.sender_node = st.node;
  start.deadline_ms = p.deadline_ms;
  start.stream = to_wire(p.stream);
  start.ids = p.ids;
  start.trace = p.trace;
  start.record = p.want_record || p.trace != 0;
  p.stream = matrix{};
  if (tr)
    start.msg = tracing::next_message_id();
  const auto bytes = start.stream.bytes.size() + start.ids.size();
  const auto msg_id = start.msg;
  const auto msg = caf::make_message(contrib_atom::value, std::move(start));
  std::shared_ptr<const outgoing_frame> frame;
  for (auto n : v.nodes_of_layer(v.schedule[u])) {
    if (tr)
      tr.message(trace_kind::send, "contrib", relay_name(v.plan.nodes[n]), msg_id, 0, bytes,
                 static_cast<std::int32_t>(u), -1, tracing::now_ns());
    send_contribution(v.plan, n, self->node(), msg, frame);
  }
}

/// Attention layer l of a language model on a step's stream, in one call to the context
/// composer for every session of the step (its shards' work crosses to each node in one
/// message): each session's rows' keys and values appended to its context and every head's
/// attention over that context (the shards' partials merged exactly); the output projection
/// added to its rows of the stream. A session whose context fails fails alone.
void attend(self_ptr self, std::uint64_t id, std::uint32_t u, size_t done, std::uint32_t l) {
  auto& st = self->state;
  auto& p = st.pending.at(id);
  const auto& m = *st.model;
  const auto& lc = m.config.layers[l];
  const auto& lp = m.layers[l];
  const std::int64_t t0 = p.trace ? tracing::now_ns() : 0;
  matrix normed;
  std::vector<float> inv_rms;
  experts::rms_norm_forward(p.stream, lp.norm, normed, inv_rms);
  std::vector<decode_item> items;
  std::vector<step_slice> asked; // the slice of each item
  std::uint32_t deadline_ms = 0;
  for (const auto s : p.step.slices) {
    if (!runs_in(st, s.feed, id))
      continue;
    const auto& f = st.feeds.at(s.feed);
    const auto session = st.sessions.find(f.session);
    if (session == st.sessions.end()) {
      fail_feed(self, s.feed, make_mesh_error(mesh_errc::internal,
                                              fault(s.feed, session_gone(st, f.session))));
      if (!st.pending.contains(id))
        return; // that was the step's last feed
      continue;
    }
    const auto position = static_cast<std::int64_t>(f.position + s.first);
    const matrix rows = normed.middleRows(s.row, s.count);
    const auto proj = experts::attention_project(lp.attention, lc, rows, position);
    decode_item item;
    item.context = session->second.contexts.at(l);
    for (int h = 0; h < lc.heads; ++h) {
      item.q.push_back(to_wire(proj.q[h]));
      item.k.push_back(to_wire(proj.k[h]));
      item.v.push_back(to_wire(proj.v[h]));
    }
    std::vector<std::int64_t> pos(s.count);
    for (size_t r = 0; r < pos.size(); ++r)
      pos[r] = position + static_cast<std::int64_t>(r);
    item.positions = pack(pos);
    items.push_back(std::move(item));
    asked.push_back(s);
    deadline_ms = std::max(deadline_ms, f.deadline_ms);
  }
  p.attending = static_cast<int>(l);
  const auto failed = [self, l](std::uint64_t feed, const std::string& why) {
    fail_feed(self, feed,
              make_mesh_error(mesh_errc::internal,
                              fault(feed, "attention layer " + std::to_string(l) + ": " + why)));
  };
  self
    ->request(st.setup.contexts, std::chrono::milliseconds(deadline_ms), decode_atom::value,
              std::move(items))
    .then(
      [=](std::vector<attention_reply>& replies) {
        for (size_t i = 0; i < asked.size(); ++i) {
          const auto& s = asked[i];
          auto it = self->state.pending.find(id);
          if (it == self->state.pending.end())
            return; // every feed of the step failed
          if (!runs_in(self->state, s.feed, id))
            continue;
          try {
            if (i >= replies.size())
              throw std::invalid_argument("the context composer answered "
                                          + std::to_string(replies.size()) + " of "
                                          + std::to_string(asked.size()) + " sessions");
            if (!replies[i].error.empty())
              throw std::runtime_error(replies[i].error);
            // attention_output lays the heads side by side as given: every one must be
            // (tokens, dim / heads), and there must be one per head.
            const auto& lc = self->state.model->config.layers[l];
            const auto width = self->state.model->config.dim / lc.heads;
            if (replies[i].heads.size() != static_cast<size_t>(lc.heads))
              throw std::invalid_argument("the shards' attention has "
                                          + std::to_string(replies[i].heads.size())
                                          + " heads, the layer " + std::to_string(lc.heads));
            std::vector<matrix> heads;
            for (auto& w : replies[i].heads) {
              heads.push_back(from_wire(w.out, "attention output"));
              if (heads.back().rows() != s.count || heads.back().cols() != width)
                throw std::invalid_argument(
                  "the shards' attention of head " + std::to_string(heads.size() - 1) + " is ("
                  + std::to_string(heads.back().rows()) + ", "
                  + std::to_string(heads.back().cols()) + "), " + std::to_string(s.count)
                  + " tokens want (" + std::to_string(s.count) + ", " + std::to_string(width)
                  + ")");
            }
            auto out = experts::attention_output(self->state.model->layers[l].attention, heads);
            auto& stream = it->second.stream;
            if (out.rows() != s.count || out.cols() != stream.cols())
              throw std::invalid_argument("the shards' attention has " + std::to_string(out.rows())
                                          + " rows for " + std::to_string(s.count) + " tokens");
            stream.middleRows(s.row, s.count) += out;
          } catch (const std::exception& e) {
            failed(s.feed, e.what());
          }
        }
        auto it = self->state.pending.find(id);
        if (it == self->state.pending.end())
          return;
        it->second.attending = -1;
        if (const trace_scope tr{it->second.trace, id, self->state.node, "composer"}; tr)
          tr.step(trace_kind::compute, "attention", static_cast<std::int32_t>(l), -1, t0,
                  tracing::now_ns(), static_cast<std::uint32_t>(it->second.tokens));
        run_stage(self, id, u, done + 1);
      },
      [=](caf::error& err) {
        const auto why = describe(err);
        for (const auto& s : asked)
          if (runs_in(self->state, s.feed, id))
            failed(s.feed, why);
      });
}

/// What the composer runs before unrolled layer u, from its `done`-th attention layer on:
/// the attention layers in between, then layer u (or, past the last layer, the head). This
/// is the network's walk (experts/base/blocks.hpp, as lm_layers_and_head follows it in one
/// process) driven by messages: each attention block and each run of consecutive expert
/// blocks ends in a reply that calls run_stage again.
void run_stage(self_ptr self, std::uint64_t id, std::uint32_t u, size_t done) {
  auto it = self->state.pending.find(id);
  if (it == self->state.pending.end())
    return;
  auto& p = it->second;
  try {
    const auto attention = p.view->attention_before(u);
    if (done < attention.size())
      attend(self, id, u, done, attention[done]);
    else if (u < p.view->schedule.size())
      start_layer(self, id, p, u);
    else
      run_head(self, id, p);
  } catch (const std::exception& e) {
    fail_request(self, id, mesh_errc::internal, e.what());
  }
}

/// Starts a step: the slices' tokens embedded and stacked, run as one request (a step of one
/// feed alone under that feed's id, so its trace reads as the request's).
void start_step(self_ptr self, step_plan plan) {
  auto& st = self->state;
  const auto& m = *st.model;
  const auto& lead = st.feeds.at(plan.slices.front().feed);
  const auto id = plan.alone ? plan.slices.front().feed : (std::uint64_t{1} << 63) | ++st.next_step;
  auto& p = st.pending[id];
  p.view = lead.view;
  p.trace = plan.alone ? lead.trace : 0;
  p.want_record = plan.alone && lead.want_record;
  p.tokens = plan.tokens;
  p.started_ns = tracing::now_ns();
  const trace_scope tr{p.trace, id, st.node, "composer"};
  const auto t_embed = tr ? tracing::now_ns() : 0;
  p.stream.resize(plan.tokens, m.config.dim);
  std::vector<std::uint64_t> ids(plan.tokens);
  for (const auto& s : plan.slices) {
    auto& f = st.feeds.at(s.feed);
    f.step = id;
    p.deadline_ms = std::max(p.deadline_ms, f.deadline_ms);
    for (std::uint32_t r = 0; r < s.count; ++r) {
      ids[s.row + r] = f.ids[s.first + r];
      p.stream.row(s.row + r) = m.embed_w.row(static_cast<Eigen::Index>(ids[s.row + r]));
    }
  }
  p.ids = pack(ids);
  expect_records(p);
  p.step = std::move(plan);
  if (tr)
    tr.step(trace_kind::compute, "embed", -1, -1, t_embed, tracing::now_ns(),
            static_cast<std::uint32_t>(p.tokens));
  run_stage(self, id, 0, 0);
}

/// Starts steps while the scheduler has feeds waiting and room for them.
void pump(self_ptr self) {
  while (auto plan = self->state.scheduler.next())
    start_step(self, std::move(*plan));
}

/// Every output of layer to_layer - 1 is in: merge them into the stream, then the stage.
void on_outputs(self_ptr self, std::uint64_t id, pending_request& p) {
  const auto& v = *p.view;
  try {
    const auto& carrier = p.outputs[0]->get_as<contribution>(1);
    p.stream = from_wire(carrier.stream, "the carried residual stream");
    if (p.stream.cols() != v.config.dim) // the head and the attention take the width as given
      throw std::invalid_argument("the carried residual stream is ("
                                  + std::to_string(p.stream.rows()) + ", "
                                  + std::to_string(p.stream.cols()) + "), the model's is "
                                  + std::to_string(v.config.dim) + " wide");
    experts::scatter_add(p.stream, gated_outputs(v.config.layers[v.schedule[p.to_layer - 1]],
                                                 p.outputs, static_cast<size_t>(p.tokens)));
  } catch (const std::exception& e) {
    fail_request(self, id, mesh_errc::internal, e.what());
    return;
  }
  p.outputs.clear();
  run_stage(self, id, p.to_layer, 0);
}

/// Who did not answer in time: the first layer with a missing decision (the silent experts,
/// else those that never decided), else the last layer's missing outputs.
std::string missing_report(const pending_request& p, std::uint64_t id, std::uint32_t deadline_ms) {
  const auto& v = *p.view;
  const auto budget = " within " + std::to_string(deadline_ms) + " ms";
  std::vector<int> step_of(v.schedule.size(), 0);
  for (size_t u = 1; u < v.schedule.size(); ++u)
    step_of[u] = v.schedule[u] == v.schedule[u - 1] ? step_of[u - 1] + 1 : 0;
  if (p.attending >= 0)
    return "request " + std::to_string(id) + ": attention layer " + std::to_string(p.attending)
           + ": the context shards did not answer" + budget;
  const bool recorded = p.want_record || p.trace != 0;
  if (!recorded && p.outputs_in == 0) {
    // No decisions were asked for, so nothing says which expert is silent: say how far it got.
    std::uint32_t from = p.to_layer;
    while (from > 0 && !v.composer_feeds(from - 1))
      --from;
    if (from > 0)
      --from;
    std::string layers;
    for (auto u = from; u < p.to_layer && u < v.schedule.size(); ++u)
      layers += (layers.empty() ? "" : ", ") + std::to_string(v.schedule[u]);
    return "request " + std::to_string(id) + ": no output of layer(s) " + layers
           + " reached the composer" + budget
           + " (decisions were not asked for; a traced request names the silent experts)";
  }
  for (std::uint32_t u = 0; u < p.to_layer && u < v.schedule.size() && recorded; ++u) {
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
  const auto last = p.to_layer - 1;
  for (size_t e = 0; e < p.outputs.size(); ++e)
    if (!p.outputs[e])
      names += (names.empty() ? "" : ", ") + member_name(v, last, e, step_of[last]);
  return "request " + std::to_string(id) + ": the outputs of expert(s) " + names
         + (last + 1 == v.schedule.size() ? std::string{" of the last layer"}
                                          : " of layer " + std::to_string(v.schedule[last]))
         + " did not reach the composer" + budget;
}

} // namespace

namespace {

/// What keeps a plan's config from being one of the composer's model ("" when it is one):
/// the embedding, the attention layers and the head run here with the model's weights, between
/// expert layers the plan's config lays out; membership changes only the experts.
std::string model_misfit(const experts::model& m, const experts::model_config& c) {
  const auto& own = m.config;
  if (c.kind != own.kind || c.dim != own.dim || c.input_dim != own.input_dim
      || c.classes != own.classes || c.vocab != own.vocab || c.layers.size() != own.layers.size())
    return "its model (dim " + std::to_string(c.dim) + ", " + std::to_string(c.layers.size())
           + " layers) is not the composer's (dim " + std::to_string(own.dim) + ", "
           + std::to_string(own.layers.size()) + " layers)";
  for (size_t l = 0; l < c.layers.size(); ++l)
    if (c.layers[l].kind != own.layers[l].kind || c.layers[l].heads != own.layers[l].heads)
      return "its layer " + std::to_string(l) + " is not the composer's model's";
  return {};
}

std::function<caf::error(const std::string&)> refusal(std::uint64_t id) {
  return [id](const std::string& why) {
    return make_mesh_error(mesh_errc::bad_request, "request " + std::to_string(id) + ": " + why);
  };
}

/// A language model's request: the session's next tokens, checked against it and the model.
caf::expected<std::vector<std::uint64_t>> feed_ids(self_ptr self, std::uint64_t id,
                                                   const infer_request& req) {
  auto& st = self->state;
  const auto& c = st.model->config;
  const auto bad = refusal(id);
  if (req.tokens.rows != 0 || !req.tokens.bytes.empty())
    return bad("'" + c.name + "' is a language model: send byte tokens as ids to a session "
                              "(eoe generate --connect), not a tensor");
  auto s = st.sessions.find(req.session);
  if (s == st.sessions.end())
    return bad(session_gone(st, req.session));
  if (!s->second.broken.empty())
    return bad("session " + std::to_string(req.session) + ": " + s->second.broken);
  if (s->second.busy)
    return bad("session " + std::to_string(req.session)
               + " is still feeding a request: one at a time");
  if (req.position != s->second.position)
    return bad("session " + std::to_string(req.session) + " is at position "
               + std::to_string(s->second.position) + ", the tokens start at "
               + std::to_string(req.position));
  if (req.ids.empty() || req.ids.size() % 8 != 0)
    return bad(std::to_string(req.ids.size()) + " id bytes: T >= 1 tokens of 8 bytes each");
  auto ids = unpack<std::uint64_t>(req.ids, "token ids");
  if (ids.size() > std::uint32_t{1} << 24)
    return bad(std::to_string(ids.size()) + " tokens in one request: at most 16777216");
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] >= static_cast<std::uint64_t>(c.vocab))
      return bad("token " + std::to_string(t) + " is " + std::to_string(ids[t])
                 + ", not below vocab = " + std::to_string(c.vocab));
  return ids;
}

/// A classifier request's embedded stream, or an error naming what does not fit the model.
caf::expected<matrix> embed(self_ptr self, std::uint64_t id, const infer_request& req) {
  auto& st = self->state;
  const auto& m = *st.model;
  const auto& c = m.config;
  const auto bad = refusal(id);
  if (req.session != 0)
    return bad("'" + c.name + "' is not a language model: it has no sessions");
  const int in_dim = c.input_dim > 0 ? c.input_dim : c.dim;
  matrix x;
  try {
    x = from_wire(req.tokens, "request tokens");
  } catch (const std::exception& e) {
    return bad(e.what());
  }
  if (x.rows() == 0 || x.cols() != in_dim)
    return bad("tokens are (" + std::to_string(x.rows()) + ", " + std::to_string(x.cols())
               + "), the model takes (T >= 1, " + std::to_string(in_dim) + ")");
  if (!req.ids.empty() && req.ids.size() != static_cast<size_t>(x.rows()) * 8)
    return bad(std::to_string(req.ids.size() / 8) + " token ids for " + std::to_string(x.rows())
               + " tokens");
  if (c.input_dim == 0)
    return x;
  matrix h;
  st.be->gemm(x, m.embed_w, h);
  st.be->add_bias(h, m.embed_b);
  return h;
}

/// Request id's deadline has passed: it fails, unless it has been answered.
void deadline_passed(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  if (auto f = st.feeds.find(id); f != st.feeds.end()) {
    const auto ms = f->second.deadline_ms;
    const auto step = st.pending.find(f->second.step);
    const auto why =
      f->second.step != 0 && step != st.pending.end()
        ? missing_report(step->second, id, ms)
        : fault(id, "no step ran its tokens within " + std::to_string(ms) + " ms ("
                      + std::to_string(st.scheduler.waiting()) + " requests wait, "
                      + std::to_string(st.scheduler.in_flight()) + " steps in the mesh)");
    fail_feed(self, id, make_mesh_error(mesh_errc::deadline_exceeded, why));
    return;
  }
  auto it = st.pending.find(id);
  if (it == st.pending.end() || !it->second.step.slices.empty())
    return;
  const auto why = missing_report(it->second, id, it->second.deadline_ms);
  it->second.rp.deliver(make_mesh_error(mesh_errc::deadline_exceeded, why));
  st.pending.erase(it);
}

/// A session's idle timer fell due: it closes when no request has fed it for
/// setup.session_idle; a session fed since is timed again from its last request.
void idle_limit_passed(self_ptr self, std::uint64_t id, std::chrono::steady_clock::time_point now) {
  auto& st = self->state;
  auto s = st.sessions.find(id);
  if (s == st.sessions.end() || s->second.busy)
    return; // closed, or a request feeds it (its end arms the timer again)
  const auto idle = st.setup.session_idle;
  if (now - s->second.last_fed < idle) {
    arm(self, {composer_timer::idle, id}, s->second.last_fed + idle - now);
    return;
  }
  close_session(self, s);
  st.expired.insert(id);
  if (st.expired.size() > 4096)
    st.expired.erase(st.expired.begin());
}

} // namespace

composer_actor::behavior_type
composer_behavior(composer_actor::stateful_pointer<composer_state> self,
                  std::shared_ptr<const experts::model> model, std::string node,
                  composer_setup setup) {
  auto& st = self->state;
  st.model = std::move(model);
  st.node = std::move(node);
  st.setup = std::move(setup);
  st.be = kernels::make_cpu_backend();
  st.scheduler = step_scheduler{st.setup.max_step_tokens, st.setup.steps_in_flight};
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
      auto ev = st.epochs.find(epoch);
      if (ev == st.epochs.end())
        return make_mesh_error(mesh_errc::not_ready,
                               "the composer has no plan for epoch " + std::to_string(epoch));
      if (st.pending.contains(id) || st.feeds.contains(id)) // its answer would go to the other
        return make_mesh_error(mesh_errc::bad_request,
                               fault(id, "a request of this id is in flight already"));
      const trace_scope tr{req.trace_id, id, st.node, "composer"};
      if (tr)
        tr.message(trace_kind::receive, "infer", "coordinator", req.trace_msg, 0,
                   req.tokens.bytes.size() + req.ids.size(), -1, -1, tracing::now_ns());
      if (st.model->config.is_lm()) {
        auto ids = feed_ids(self, id, req);
        if (!ids)
          return std::move(ids.error());
        matrix logits;
        try {
          logits.resize(static_cast<Eigen::Index>(ids->size()), st.model->config.vocab);
        } catch (const std::bad_alloc&) {
          return make_mesh_error(mesh_errc::bad_request,
                                 fault(id, "the logits of " + std::to_string(ids->size())
                                             + " tokens do not fit in the composer's memory"));
        }
        auto& f = st.feeds[id];
        f.rp = self->make_response_promise<infer_result>();
        f.view = ev->second;
        f.session = req.session;
        f.position = req.position;
        f.ids = std::move(*ids);
        f.deadline_ms = req.deadline_ms;
        f.trace = req.trace_id;
        f.want_record = req.want_record;
        f.logits = std::move(logits);
        auto& s = st.sessions.at(req.session);
        s.busy = true;
        auto rp = f.rp;
        arm(self, {composer_timer::deadline, id}, std::chrono::milliseconds(req.deadline_ms));
        st.scheduler.add(id, epoch, static_cast<std::uint32_t>(f.ids.size()),
                         f.trace != 0 || f.want_record);
        pump(self);
        return rp;
      }
      const auto t_embed = tr ? tracing::now_ns() : 0;
      auto h = embed(self, id, req);
      if (!h)
        return std::move(h.error());
      if (tr)
        tr.step(trace_kind::compute, "embed", -1, -1, t_embed, tracing::now_ns(),
                static_cast<std::uint32_t>(h->rows()));
      auto& p = st.pending[id];
      p.trace = req.trace_id;
      p.rp = self->make_response_promise<infer_result>();
      p.view = ev->second;
      p.tokens = h->rows();
      p.want_record = req.want_record;
      p.deadline_ms = req.deadline_ms;
      p.ids = req.ids;
      p.stream = std::move(*h);
      expect_records(p);
      auto rp = p.rp;
      arm(self, {composer_timer::deadline, id}, std::chrono::milliseconds(req.deadline_ms));
      run_stage(self, id, 0, 0);
      return rp;
    },
    [=](contrib_atom, const contribution& c) {
      auto& st = self->state;
      auto it = st.pending.find(c.request);
      if (it == st.pending.end() || c.to_layer != it->second.to_layer || c.to_layer == 0)
        return; // late (answered already) or misrouted
      auto& p = it->second;
      if (const trace_scope tr{c.trace, c.request, st.node, "composer"}; tr) {
        const auto& v = *p.view;
        const auto l = v.schedule[c.to_layer - 1];
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
      if (++p.outputs_in == p.outputs.size())
        on_outputs(self, c.request, p);
    },
    [=](session_atom) -> caf::result<std::uint64_t> {
      auto& st = self->state;
      const auto& c = st.model->config;
      if (!c.is_lm())
        return make_mesh_error(mesh_errc::bad_request,
                               "'" + c.name + "' is not a language model: it has no sessions");
      if (st.sessions.size() >= st.setup.max_sessions)
        return make_mesh_error(mesh_errc::not_ready,
                               std::to_string(st.sessions.size())
                                 + " sessions are open, the most the composer keeps: close one");
      const auto id = ++st.next_session;
      auto& s = st.sessions[id];
      s.contexts.assign(c.layers.size(), 0);
      s.busy = true; // until every context exists
      auto rp = self->make_response_promise<std::uint64_t>();
      auto left = std::make_shared<size_t>(0);
      for (size_t l = 0; l < c.layers.size(); ++l)
        *left += c.layers[l].kind == experts::layer_kind::attention;
      if (*left == 0) {
        s.busy = false;
        arm_idle_timer(self, id, s);
        return id;
      }
      for (size_t l = 0; l < c.layers.size(); ++l) {
        const auto& lc = c.layers[l];
        if (lc.kind != experts::layer_kind::attention)
          continue;
        context_spec spec;
        spec.heads = static_cast<std::uint32_t>(lc.heads);
        spec.head_dim = static_cast<std::uint32_t>(c.dim / lc.heads);
        spec.block_size = st.setup.block_size;
        spec.shard_size = st.setup.shard_positions;
        self->request(st.setup.contexts, std::chrono::seconds(30), create_atom::value, spec)
          .then(
            [=](std::uint64_t context) mutable {
              auto s = self->state.sessions.find(id);
              if (s == self->state.sessions.end()) { // it failed or closed meanwhile
                caf::anon_send(self->state.setup.contexts, drop_atom::value, context);
                return;
              }
              s->second.contexts[l] = context;
              if (--*left == 0) {
                s->second.busy = false;
                arm_idle_timer(self, id, s->second);
                rp.deliver(id);
              }
            },
            [=](caf::error& err) mutable {
              // The first failure answers; the contexts made so far go with the session.
              auto s = self->state.sessions.find(id);
              if (s == self->state.sessions.end())
                return;
              close_session(self, s);
              rp.deliver(std::move(err));
            });
      }
      return rp;
    },
    [=](drop_atom, std::uint64_t id) -> caf::result<ok_atom> {
      auto& st = self->state;
      auto s = st.sessions.find(id);
      if (s == st.sessions.end())
        return make_mesh_error(mesh_errc::bad_request, session_gone(st, id));
      if (s->second.busy) {
        // Closed while feeding (its client left): the request fails now, its step goes on
        // without it.
        for (const auto& [feed, f] : st.feeds)
          if (f.session == id) {
            fail_feed(self, feed,
                      make_mesh_error(mesh_errc::bad_request,
                                      fault(feed, "its session " + std::to_string(id)
                                                    + " was closed while it fed it")));
            break;
          }
        s = st.sessions.find(id);
        if (s == st.sessions.end())
          return ok_atom::value;
      }
      close_session(self, s);
      return ok_atom::value;
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
      std::shared_ptr<const epoch_view> view;
      try {
        view = decode_plan(plan);
      } catch (const std::exception& e) {
        return make_mesh_error(mesh_errc::bad_request, std::string{"composer: "} + e.what());
      }
      if (auto misfit = model_misfit(*self->state.model, view->config); !misfit.empty())
        return make_mesh_error(mesh_errc::bad_request,
                               "composer: plan of epoch " + std::to_string(plan.epoch) + ": "
                                 + misfit);
      self->state.epochs[plan.epoch] = std::move(view);
      return ok_atom::value;
    },
    [=](retire_atom, std::uint64_t epoch) { self->state.epochs.erase(epoch); },
    [=](stats_atom) {
      auto& st = self->state;
      auto s = st.stats;
      s.sessions = st.sessions.size();
      s.waiting = st.scheduler.waiting();
      s.running = st.feeds.size() - s.waiting;
      return s;
    },
    [=](deadline_atom, std::uint64_t armed) {
      auto& st = self->state;
      const auto now = std::chrono::steady_clock::now();
      std::optional<std::chrono::steady_clock::time_point> rearm;
      for (const auto& [what, id] : st.timers.fire(deadline_message_time(armed), now, rearm))
        if (what == composer_timer::deadline)
          deadline_passed(self, id);
        else
          idle_limit_passed(self, id, now);
      arm_deadline_message(self, rearm, now);
    },
  };
}

} // namespace eoe::actors
