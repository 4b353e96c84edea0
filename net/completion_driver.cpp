#include "net/completion_driver.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "net/completion_text.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace eoe::net {

namespace http = boost::beast::http;

token_logprob logprob_of(const float* logits, size_t vocab, std::uint8_t token, std::uint32_t top) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (size_t k = 0; k < vocab; ++k)
    sum += std::exp(static_cast<double>(logits[k] - mx));
  const auto lse = static_cast<double>(mx) + std::log(sum);
  token_logprob out;
  out.token = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  const auto keep = std::min<size_t>(top, vocab);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (size_t i = 0; i < keep; ++i)
    out.top.emplace_back(static_cast<std::uint8_t>(order[i]),
                         static_cast<float>(logits[order[i]] - lse));
  return out;
}

namespace {

/// A choice's state, shared with the exit hook that closes its session.
struct choice_state {
  choice_spec spec;
  choice_sink sink;
  actors::coordinator_actor coordinator;
  experts::generation gen;
  completion_text text;
  std::uint64_t session = 0;
  std::uint64_t position = 0;
  bool first = true;      ///< the prompt's feed is next
  bool ended = false;     ///< the last event was sent
  bool opening = false;   ///< a session was asked for and its id has not come yet
  bool cancelled = false; ///< told to stop (its client left) while opening

  choice_state(choice_spec s, choice_sink k, actors::coordinator_actor c)
    : spec(std::move(s)), sink(std::move(k)), coordinator(std::move(c)),
      gen(spec.context, spec.prompt, spec.sampling), text(spec.stop) {}

  void close_session() {
    if (session != 0)
      caf::anon_send(coordinator, actors::drop_atom::value, session);
    session = 0;
  }

  void fail(std::string why, http::status status) {
    if (ended)
      return;
    ended = true;
    choice_event e;
    e.error = std::move(why);
    e.error_status = status;
    sink(std::move(e));
  }
};

http::status status_of(const caf::error& err) {
  if (err.category() == actors::mesh_category)
    switch (static_cast<actors::mesh_errc>(err.code())) {
      case actors::mesh_errc::bad_request: return http::status::bad_request;
      case actors::mesh_errc::deadline_exceeded: return http::status::gateway_timeout;
      case actors::mesh_errc::not_ready:
      case actors::mesh_errc::node_lost: return http::status::service_unavailable;
      default: return http::status::internal_server_error;
    }
  return err == caf::sec::request_timeout ? http::status::gateway_timeout
                                          : http::status::bad_gateway;
}

void feed_next(caf::event_based_actor* self, std::shared_ptr<choice_state> st);

/// A fresh session (at the start, and when the generation restarts its window), then the feed.
void open_then_feed(caf::event_based_actor* self, std::shared_ptr<choice_state> st) {
  st->close_session();
  st->opening = true;
  // (a longer timeout than the coordinator's own: an id that comes is never lost)
  self->request(st->coordinator, std::chrono::seconds(120), actors::session_atom::value)
    .then(
      [self, st](std::uint64_t id) {
        st->opening = false;
        st->session = id;
        st->position = 0;
        if (st->cancelled) { // its client left while it opened: closed at once
          self->quit(caf::exit_reason::user_shutdown);
          return;
        }
        feed_next(self, st);
      },
      [self, st](caf::error& err) {
        st->opening = false;
        if (!st->cancelled)
          st->fail("opening a session: " + actors::describe(err), status_of(err));
        self->quit();
      });
}

/// The echoed prompt's events: its text, and (asked for) each byte's log-probability from the
/// prompt's logits (none for the first byte, nor for bytes before the window read).
void echo_prompt(choice_state& st, const matrix& logits) {
  choice_event e;
  e.text = st.text.lead(st.spec.prompt); // a character it ends inside completes with the reply
  if (st.spec.logprobs) {
    const auto& p = st.spec.prompt;
    const auto skipped = p.size() - st.gen.prompt_fed();
    for (size_t i = 0; i < p.size(); ++i) {
      const auto token = static_cast<std::uint8_t>(p[i]);
      if (i <= skipped) {
        e.logprobs.push_back({token, std::nullopt, {}});
        continue;
      }
      const auto row = static_cast<Eigen::Index>(i - skipped - 1);
      const matrix r = logits.row(row);
      e.logprobs.push_back(logprob_of(r.data(), static_cast<size_t>(r.cols()), token, *st.spec.logprobs));
    }
  }
  st.sink(std::move(e));
}

void feed_next(caf::event_based_actor* self, std::shared_ptr<choice_state> st) {
  const auto& step = st->gen.next();
  actors::infer_request req;
  std::vector<std::uint64_t> ids; // the bytes as token ids (unsigned: not char's sign)
  for (unsigned char c : step.tokens)
    ids.push_back(c);
  req.ids = actors::pack(ids);
  req.session = st->session;
  req.position = st->position;
  req.want_record = false;
  req.deadline_ms = st->spec.deadline_ms;
  const auto fed = step.tokens.size();
  self
    ->request(st->coordinator, std::chrono::milliseconds(st->spec.deadline_ms) + std::chrono::seconds(5),
              actors::infer_atom::value, std::move(req))
    .then(
      [self, st, fed](actors::infer_result& r) {
        try {
          const matrix logits = actors::from_wire(r.output, "the cluster's logits");
          if (logits.rows() != static_cast<Eigen::Index>(fed))
            throw std::runtime_error(std::to_string(logits.rows()) + " rows of logits for "
                                     + std::to_string(fed) + " tokens");
          st->position += fed;
          if (st->first && st->spec.echo)
            echo_prompt(*st, logits);
          st->first = false;
          const auto token = st->gen.take(logits);
          choice_event e;
          e.tokens = 1;
          e.text = st->text.push(token);
          if (st->spec.logprobs) {
            const matrix last = logits.bottomRows(1);
            e.logprobs.push_back(
              logprob_of(last.data(), static_cast<size_t>(last.cols()), token, *st->spec.logprobs));
          }
          if (st->text.stopped() || st->gen.done()) {
            e.finish_reason = st->text.stopped() ? "stop" : "length";
            e.text += st->text.finish();
            e.prompt_tokens = st->spec.prompt.size();
            st->ended = true;
            st->close_session();
            st->sink(std::move(e));
            self->quit();
            return;
          }
          st->sink(std::move(e));
          if (st->gen.next().restart)
            open_then_feed(self, st);
          else
            feed_next(self, st);
        } catch (const std::exception& ex) {
          st->fail(std::string{"session "} + std::to_string(st->session) + ": " + ex.what(),
                   http::status::internal_server_error);
          self->quit();
        }
      },
      [self, st](caf::error& err) {
        st->fail("session " + std::to_string(st->session) + " at position "
                   + std::to_string(st->position) + ": " + actors::describe(err),
                 status_of(err));
        self->quit();
      });
}

} // namespace

caf::actor spawn_choice(caf::actor_system& sys, actors::coordinator_actor coordinator,
                        choice_spec spec, choice_sink sink) {
  auto st = std::make_shared<choice_state>(std::move(spec), std::move(sink), std::move(coordinator));
  return sys.spawn([st](caf::event_based_actor* self, int) -> caf::behavior {
    // However it ends (done, failed, or stopped because its client left), its session
    // closes; stopped while a session is being opened, it waits for the id to close it.
    self->attach_functor([st] { st->close_session(); });
    self->set_exit_handler([self, st](caf::exit_msg& msg) {
      st->cancelled = true;
      if (!st->opening)
        self->quit(msg.reason);
    });
    open_then_feed(self, st);
    return {[](int) {}};
  }, 0);
}

} // namespace eoe::net
