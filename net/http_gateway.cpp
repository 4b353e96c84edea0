#include "net/http_gateway.hpp"

#include "actors/plan.hpp"
#include "net/admission.hpp"
#include "net/completion_driver.hpp"
#include "net/gateway_metrics.hpp"
#include "net/gateway_routes.hpp"
#include "net/infer_json.hpp"
#include "experts/base/utf8.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <atomic>
#include <chrono>
#include <ctime>
#include <deque>
#include <random>
#include <iostream>
#include <optional>
#include <thread>
#include <variant>

namespace eoe::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

using response = http_response;
using request = http_request;

/// A connection's executor: its own strand of the gateway's io_context, named as a type (not
/// beast::tcp_stream's type-erased executor, whose copies and lookups were ~5% of the I/O
/// threads' cycles under load).
using connection_strand = asio::strand<asio::io_context::executor_type>;
using connection_socket = tcp::socket::rebind_executor<connection_strand>::other;
using connection_stream = beast::basic_stream<tcp, connection_strand>;

/// The most room a request's body gets in a connection's read buffer (what one read asks
/// the kernel for, at most).
constexpr std::size_t read_chunk_bytes = 64 * 1024;

/// A connection the gateway can close when it shuts down.
struct closable {
  virtual ~closable() = default;
  virtual void close_now() = 0;
};

struct http_gateway::impl : std::enable_shared_from_this<impl> {
  caf::actor_system& sys;
  actors::coordinator_actor coordinator;
  experts::model_config model;
  gateway_settings s;
  asio::io_context io;
  /// The acceptor and the session list run on this strand; each connection on its own.
  asio::strand<asio::io_context::executor_type> accept_strand{asio::make_strand(io)};
  tcp::acceptor acceptor{accept_strand};
  std::vector<std::thread> threads;
  route_settings routes;
  gateway_metrics metrics;
  admission admit;                        ///< inference requests and completions
  std::atomic<std::uint64_t> requests{0}; ///< numbers each request, for its log line
  std::atomic<std::uint64_t> completions{0}; ///< numbers completion ids
  std::vector<std::weak_ptr<closable>> sessions; ///< on accept_strand only

  impl(caf::actor_system& system, actors::coordinator_actor c, experts::model_config m,
       gateway_settings settings)
    : sys(system), coordinator(std::move(c)), model(std::move(m)), s(std::move(settings)),
      admit(s.max_concurrency, s.max_queue) {
    routes.infer = {static_cast<std::uint32_t>(model.input_dim > 0 ? model.input_dim : model.dim),
                    s.max_tokens, s.deadline_ms};
    routes.admin_token = s.admin_token;
    routes.language_model = model.is_lm();
    routes.completions.model = model.name;
    routes.completions.max_tokens = s.max_generate;
    routes.completions.max_prompt_bytes = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(s.max_body_bytes, std::uint64_t{1} << 30));
    routes.created = static_cast<std::int64_t>(std::time(nullptr));
  }

  /// The gauges of the admission, after it changed (one snapshot of both).
  void admission_changed() {
    const auto [running, waiting] = admit.counts();
    metrics.in_flight(running);
    metrics.waiting(waiting);
  }

  /// The io thread: until nothing is left to do. A handler that throws past its request's
  /// guard loses its connection (its handlers held it), never the process.
  void run() {
    for (;;) {
      try {
        io.run();
        return;
      } catch (const std::exception& e) {
        std::cerr << ("gateway: a connection dropped by an exception: " + experts::escape_invalid_utf8(e.what()) + "\n")
                  << std::flush;
      } catch (...) {
        std::cerr << "gateway: a connection dropped by an exception that is not a std::exception\n"
                  << std::flush;
      }
    }
  }

  /// Runs one request to the coordinator from a short-lived actor; the handlers run on a CAF
  /// thread.
  template <class OnOk, class OnErr, class... Ts>
  void ask(std::chrono::milliseconds timeout, OnOk ok, OnErr err, Ts... xs) {
    auto to = coordinator;
    // (one unused argument: CAF 0.17 dereferences a null argument tuple for a function actor
    // that takes none, which UBSan reports)
    sys.spawn(
      [=](caf::event_based_actor* self, int) { self->request(to, timeout, xs...).then(ok, err); }, 0);
  }

  void accept();
};

namespace {

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

/// One connection: reads a request, answers it (at once, or when the cluster has), reads the
/// next. Whatever a request holds, it gets an answer: an exception while answering is our bug,
/// answered 500 and logged with the request's id.
class session : public closable, public std::enable_shared_from_this<session> {
public:
  /// From any thread: the socket closes on the connection's own strand.
  void close_now() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->client_gone(); });
  }

  session(connection_socket socket, std::shared_ptr<http_gateway::impl> g)
    : stream_(std::move(socket)), g_(std::move(g)), write_timer_(stream_.get_executor()) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

private:
  /// The next request: its header, then its body. Beast reads as much as the buffer has room
  /// for, at least 512 bytes, and a flat_buffer grows only when a read needs more, so a body
  /// read into the buffer the header came in took a recvmsg per 512 bytes (strace under
  /// load: 30 per 16 KB request, most of the I/O threads' kernel time). The body gets room
  /// for itself (up to read_chunk_bytes); a connection waiting for its next request holds
  /// none of it.
  void read() {
    if (buffer_.size() == 0)
      buffer_.shrink_to_fit();
    parser_.emplace();
    parser_->body_limit(g_->s.max_body_bytes);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->on_header(ec);
                            });
  }

  void on_header(beast::error_code ec) {
    if (ec || parser_->is_done()) {
      on_read(ec);
      return;
    }
    if (const auto length = parser_->content_length())
      buffer_.reserve(static_cast<size_t>(std::min<std::uint64_t>(*length, read_chunk_bytes)));
    else
      buffer_.reserve(read_chunk_bytes); // chunked
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof
        || ec == asio::error::connection_reset || ec == beast::error::timeout) {
      close();
      return;
    }
    id_ = ++g_->requests;
    if (ec) {
      version_ = 11;
      keep_alive_ = false;
      send(read_error_reply(ec, g_->s.max_body_bytes));
      return;
    }
    req_ = parser_->release();
    version_ = req_.version();
    keep_alive_ = req_.keep_alive();
    try {
      dispatch(route(req_, g_->routes));
    } catch (const std::exception& e) {
      send(internal_error(e.what()));
    } catch (...) {
      send(internal_error("an exception that is not a std::exception"));
    }
  }

  /// The 500 of our own bug, logged with what the client sent us (quoted safely).
  gateway_reply internal_error(std::string_view what) const {
    std::string line = "gateway: request " + std::to_string(id_) + " ("
                       + experts::quote_input({req_.method_string().data(), req_.method_string().size()}) + " "
                       + experts::quote_input({req_.target().data(), req_.target().size()})
                       + "): internal error: " + experts::escape_invalid_utf8(what) + "\n";
    std::cerr << line << std::flush;
    return error_reply(http::status::internal_server_error,
                       "internal error while answering request " + std::to_string(id_) + ": "
                         + std::string(what) + " (the gateway's log has it)");
  }

  bool is_completion() const {
    const std::string_view target{req_.target().data(), req_.target().size()};
    return target.substr(0, target.find('?')) == "/v1/completions";
  }

  void dispatch(gateway_action action) {
    std::visit(overloaded{
                 [&](gateway_reply& r) {
                   if (!r.outcome.empty() && is_completion())
                     g_->metrics.completion_done(r.outcome, 0, 0, 0);
                   else if (!r.outcome.empty())
                     g_->metrics.request_done(r.outcome, 0, nullptr);
                   send(std::move(r));
                 },
                 [&](infer_call& c) { infer(std::move(c.request)); },
                 [&](completion_call& c) { complete(std::move(c.request)); },
                 [&](health_call&) { status(health_reply, true); },
                 [&](topology_call&) { status(topology_reply, false); },
                 [&](metrics_call&) { scrape(); },
                 [&](add_expert_call& c) {
                   change_membership(actors::add_expert_atom::value, c.layer, c.node, c.init);
                 },
                 [&](remove_expert_call& c) {
                   change_membership(actors::remove_expert_atom::value, c.layer, c.id);
                 },
               },
               action);
  }

  /// Makes the answer on the calling (CAF) thread and sends it from the connection's: an
  /// exception while making it is a 500.
  template <class Make>
  void answer(Make make) {
    gateway_reply r;
    try {
      r = make();
    } catch (const std::exception& e) {
      r = internal_error(e.what());
    } catch (...) {
      r = internal_error("an exception that is not a std::exception");
    }
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), r = std::move(r)]() mutable { self->send(std::move(r)); });
  }

  void send(gateway_reply r) {
    g_->metrics.http_response(static_cast<unsigned>(r.status));
    auto res = to_response(std::move(r), version_, keep_alive_);
    res.set("X-Request-Id", std::to_string(id_));
    auto sp = std::make_shared<response>(std::move(res));
    http::async_write(stream_, *sp, [self = shared_from_this(), sp](beast::error_code ec, size_t) {
      if (ec || !sp->keep_alive())
        self->close();
      else
        self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  /// 429 with Retry-After: the gateway's slots and queue are full.
  gateway_reply overload_reply(bool openai) const {
    const auto why = "the gateway has " + std::to_string(g_->s.max_concurrency)
                     + " requests in flight and " + std::to_string(g_->s.max_queue)
                     + " waiting already; try again";
    auto r = openai ? api_error_reply(http::status::too_many_requests, why, "", "rate_limit_exceeded")
                    : error_reply(http::status::too_many_requests, why);
    r.headers.emplace_back(http::field::retry_after, "1");
    return r;
  }

  /// Runs `start` on this connection's strand once the admission gives it a slot (at once, or
  /// when a running request ends); false when it refuses.
  bool admitted(std::function<void()> start) {
    auto self = shared_from_this();
    ticket_ = 0;
    const auto verdict = g_->admit.enter(
      [self, start] {
        asio::post(self->stream_.get_executor(), [self, start] {
          self->ticket_ = 0;
          start();
        });
      },
      &ticket_);
    g_->admission_changed();
    if (verdict == admission::verdict::run)
      start();
    return verdict != admission::verdict::refuse;
  }

  void leave_admission() {
    g_->admit.leave();
    g_->admission_changed();
  }

  void infer(actors::infer_request r) {
    auto self = shared_from_this();
    if (!admitted([self, r]() mutable { self->run_infer(std::move(r)); })) {
      g_->metrics.request_done("overloaded", 0, nullptr);
      send(overload_reply(false));
    }
  }

  void run_infer(actors::infer_request r) {
    const auto start = std::chrono::steady_clock::now();
    const auto timeout = std::chrono::milliseconds(r.deadline_ms) + std::chrono::seconds(2);
    auto self = shared_from_this();
    auto done = [self, start](const std::string& outcome, const actors::infer_result* res) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      self->g_->metrics.request_done(outcome, secs, res);
      self->leave_admission();
    };
    g_->ask(
      timeout,
      [self, done](actors::infer_result& res) {
        self->answer([&] {
          try {
            auto reply = infer_reply(res);
            done("ok", &res);
            return reply;
          } catch (...) {
            done("internal", nullptr);
            throw;
          }
        });
      },
      [self, done](const caf::error& err) {
        done(outcome_of(err), nullptr);
        self->answer([&] { return mesh_error_reply(err); });
      },
      actors::infer_atom::value, std::move(r));
  }

  // ---- completions ---------------------------------------------------------------------

  /// A completion request on this connection: its choices' drivers and what they said.
  struct completion_run {
    completion_request req;
    std::string id;
    std::int64_t created = 0;
    std::chrono::steady_clock::time_point start;
    std::vector<caf::actor> drivers;
    std::vector<completion_choice> choices;
    std::vector<size_t> offsets;  ///< per choice: bytes reported (logprobs' text_offset)
    std::vector<std::optional<std::chrono::steady_clock::time_point>> last_token;
    size_t open = 0;              ///< choices not ended
    completion_usage usage;
    bool failed = false;          ///< a choice failed: the request fails
    bool over = false;            ///< answered, or its client went away
  };

  void complete(completion_request req) {
    auto self = shared_from_this();
    auto start = std::chrono::steady_clock::now();
    if (!admitted([self, req, start]() mutable { self->start_completion(std::move(req), start); })) {
      g_->metrics.completion_done("overloaded", 0, 0, 0);
      send(overload_reply(true));
      return;
    }
    if (ticket_ != 0)
      watch_client(); // waiting: a client that leaves meanwhile gives its place up at once
  }

  void start_completion(completion_request req, std::chrono::steady_clock::time_point start) {
    if (closed_) { // its client left while it waited
      g_->metrics.completion_done("client_gone", 0, 0, 0);
      leave_admission();
      return;
    }
    try {
      launch_completion(std::move(req), start);
    } catch (const std::exception& e) {
      const auto what = internal_error(e.what());
      if (run_ && run_->start == start && !run_->over) {
        fail_completion(*run_, http::status::internal_server_error, e.what());
      } else {
        g_->metrics.completion_done("internal", 0, 0, 0);
        leave_admission();
        after_watch([self = shared_from_this(), what] { self->send(what); });
      }
    }
  }

  void launch_completion(completion_request req, std::chrono::steady_clock::time_point start) {
    auto run = std::make_shared<completion_run>();
    run->id = "cmpl-" + std::to_string(g_->routes.created) + "-" + std::to_string(++g_->completions);
    run->created = static_cast<std::int64_t>(std::time(nullptr));
    run->start = start;
    const auto choices = req.prompts.size() * req.n;
    run->choices.resize(choices);
    run->offsets.assign(choices, 0);
    run->last_token.resize(choices);
    run->open = choices;
    const std::uint64_t seed = req.seed ? *req.seed : std::random_device{}();
    run->req = std::move(req);
    run_ = run;
    if (run->req.stream)
      start_stream();
    if (!watching_)
      watch_client();
    auto self = shared_from_this();
    for (size_t i = 0; i < choices; ++i) {
      const auto& r = run->req;
      choice_spec spec;
      spec.prompt = r.prompts[i / r.n];
      spec.context = g_->model.context;
      spec.sampling.tokens = static_cast<int>(r.max_tokens);
      spec.sampling.temperature = r.temperature;
      spec.sampling.top_p = r.top_p;
      spec.sampling.seed = seed + i;
      spec.stop = r.stop;
      spec.logprobs = r.logprobs;
      spec.echo = r.echo;
      spec.deadline_ms = g_->s.deadline_ms;
      run->choices[i].with_logprobs = r.logprobs.has_value();
      run->drivers.push_back(spawn_choice(
        g_->sys, g_->coordinator, std::move(spec), [self, run, i](choice_event e) {
          asio::post(self->stream_.get_executor(), [self, run, i, e = std::move(e)]() mutable {
            self->on_choice(*run, static_cast<std::uint32_t>(i), std::move(e));
          });
        }));
    }
  }

  void on_choice(completion_run& run, std::uint32_t i, choice_event e) {
    if (run.over)
      return;
    const auto now = std::chrono::steady_clock::now();
    if (e.tokens > 0) {
      const auto& last = run.last_token[i];
      const auto since = std::chrono::duration<double>(now - (last ? *last : run.start)).count();
      if (last)
        g_->metrics.inter_token(since);
      else
        g_->metrics.first_token(since);
      run.last_token[i] = now;
      run.usage.completion_tokens += e.tokens;
    }
    if (!e.error.empty()) {
      fail_completion(run, e.error_status, e.error);
      return;
    }
    auto& c = run.choices[i];
    if (run.req.stream) {
      if (!e.text.empty() || !e.logprobs.empty() || !e.finish_reason.empty())
        stream_write(completion_chunk(run.id, run.created, run.req.model, i, e.text,
                                      e.finish_reason, c.with_logprobs ? &e.logprobs : nullptr,
                                      run.offsets[i]));
    } else {
      c.text += e.text;
      c.logprobs.insert(c.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
    }
    run.offsets[i] += e.logprobs.size();
    if (e.finish_reason.empty())
      return;
    c.finish_reason = e.finish_reason;
    run.usage.prompt_tokens += e.prompt_tokens;
    if (--run.open > 0)
      return;
    run.over = true;
    g_->metrics.completion_done("ok", std::chrono::duration<double>(now - run.start).count(),
                                run.usage.prompt_tokens, run.usage.completion_tokens);
    leave_admission();
    if (run.req.stream) {
      if (run.req.include_usage)
        stream_write(usage_chunk(run.id, run.created, run.req.model, run.usage));
      stream_write("data: [DONE]\n\n");
      stream_end();
    } else {
      after_watch([self = shared_from_this(), run = run_] {
        self->send({http::status::ok, "application/json",
                    completion_json(run->id, run->created, run->req.model, run->choices, run->usage),
                    {}, {}});
      });
    }
  }

  /// A choice failed: the others stop, and the request answers the error (in the stream, as
  /// an error event before [DONE]).
  void fail_completion(completion_run& run, http::status status, const std::string& why) {
    run.over = true;
    for (auto& d : run.drivers)
      caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
    g_->metrics.completion_done(status == http::status::gateway_timeout ? "deadline_exceeded"
                                                                         : "error",
                                std::chrono::duration<double>(std::chrono::steady_clock::now()
                                                              - run.start)
                                  .count(),
                                run.usage.prompt_tokens, run.usage.completion_tokens);
    leave_admission();
    if (run.req.stream) {
      auto body = api_error_json(status, why);
      body.pop_back(); // its newline
      stream_write("data: " + body + "\n\n");
      stream_write("data: [DONE]\n\n");
      stream_end();
    } else {
      after_watch([self = shared_from_this(), status, why] {
        self->send(api_error_reply(status, why));
      });
    }
  }

  /// The client went away mid-completion: its choices end now (their sessions close).
  void client_gone() {
    if (closed_)
      return;
    closed_ = true;
    write_timer_.cancel();
    if (ticket_ != 0 && g_->admit.withdraw(ticket_)) { // it was waiting for a slot
      ticket_ = 0;
      g_->admission_changed();
      g_->metrics.completion_done("client_gone", 0, 0, 0);
    }
    if (auto run = run_; run && !run->over) {
      run->over = true;
      for (auto& d : run->drivers)
        caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
      g_->metrics.completion_done("client_gone",
                                  std::chrono::duration<double>(std::chrono::steady_clock::now()
                                                                - run->start)
                                    .count(),
                                  run->usage.prompt_tokens, run->usage.completion_tokens);
      leave_admission();
    }
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  /// While a completion runs, a read that notices the client closing (a pipelined request's
  /// bytes stay in the buffer for the next read).
  /// A client that closes its connection (or shuts its sending side, as uvicorn and vLLM take
  /// it) has gone. Bytes it sends meanwhile (a pipelined request) stay for the next read.
  void watch_client() {
    watching_ = true;
    stream_.expires_never();
    stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](
                                                     beast::error_code ec, size_t n) {
      self->watching_ = false;
      if (self->closed_)
        return;
      if (!ec) {
        self->buffer_.commit(n);
      } else if (ec != asio::error::operation_aborted) {
        self->client_gone();
        return;
      }
      if (auto next = std::move(self->after_watch_)) {
        self->after_watch_ = nullptr;
        next();
      } else if (!ec && self->buffer_.size() < 1 << 20) {
        self->watch_client(); // still running: watch on
      }
    });
  }

  /// Runs `next` once the watching read is over (cancelled now when it still waits).
  void after_watch(std::function<void()> next) {
    if (closed_)
      return;
    if (!watching_) {
      next();
      return;
    }
    after_watch_ = std::move(next);
    beast::error_code ignored;
    stream_.socket().cancel(ignored);
  }

  void start_stream() {
    chunked_ = version_ >= 11;
    if (!chunked_)
      keep_alive_ = false; // HTTP/1.0: the body ends when the connection does
    std::string head = std::string("HTTP/1.") + (version_ >= 11 ? "1" : "0")
                       + " 200 OK\r\nServer: eoe\r\nContent-Type: text/event-stream\r\n"
                         "Cache-Control: no-cache\r\nX-Request-Id: "
                       + std::to_string(id_) + "\r\n"
                       + (chunked_ ? "Transfer-Encoding: chunked\r\n" : "")
                       + (keep_alive_ ? "" : "Connection: close\r\n") + "\r\n";
    g_->metrics.http_response(200);
    out_.push_back(std::move(head));
    pump_writes();
  }

  /// Queues an event of the stream (as an HTTP chunk on HTTP/1.1).
  void stream_write(std::string data) {
    if (closed_)
      return;
    if (chunked_) {
      char size[24];
      std::snprintf(size, sizeof size, "%zx\r\n", data.size());
      data = size + data + "\r\n";
    }
    out_.push_back(std::move(data));
    pump_writes();
  }

  /// The stream's end: its last chunk, then the next request (or the close).
  void stream_end() {
    if (chunked_)
      out_.push_back("0\r\n\r\n");
    stream_ending_ = true;
    pump_writes();
  }

  void pump_writes() {
    if (writing_ || closed_)
      return;
    if (out_.empty()) {
      if (stream_ending_) {
        stream_ending_ = false;
        after_watch([self = shared_from_this()] {
          if (self->keep_alive_)
            self->read();
          else
            self->close();
        });
      }
      return;
    }
    writing_ = true;
    auto data = std::make_shared<std::string>(std::move(out_.front()));
    out_.pop_front();
    // A client that stops reading: its connection goes after 30 s of a write not done.
    write_timer_.expires_after(std::chrono::seconds(30));
    write_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && self->writing_)
        self->client_gone();
    });
    asio::async_write(stream_.socket(), asio::buffer(*data),
                      [self = shared_from_this(), data](beast::error_code ec, size_t) {
                        self->writing_ = false;
                        self->write_timer_.cancel();
                        if (ec) {
                          self->client_gone();
                          return;
                        }
                        self->pump_writes();
                      });
  }

  /// Asks the coordinator for the cluster's status and answers what `reply` makes of it; an
  /// error is a 503 for a health check.
  void status(gateway_reply (*reply)(const actors::cluster_status&), bool health) {
    auto self = shared_from_this();
    g_->ask(
      std::chrono::seconds(5),
      [self, reply](const actors::cluster_status& st) { self->answer([&] { return reply(st); }); },
      [self, health](const caf::error& err) {
        self->answer([&] {
          auto r = mesh_error_reply(err);
          if (health)
            r.status = http::status::service_unavailable;
          return r;
        });
      },
      actors::status_atom::value);
  }

  void scrape() {
    auto self = shared_from_this();
    auto g = g_;
    const auto text = [](std::string body) {
      return gateway_reply{http::status::ok, "text/plain; version=0.0.4", std::move(body), {}, {}};
    };
    g_->sys.spawn([self, g, text](caf::event_based_actor* a, int) { // (see ask)
      a->request(g->coordinator, std::chrono::seconds(5), actors::status_atom::value)
        .then(
          [=](const actors::cluster_status& st) {
            a->request(g->coordinator, std::chrono::seconds(5), actors::stats_atom::value)
              .then(
                [=](const std::vector<actors::relay_stats>& relays) {
                  self->answer([&] { return text(g->metrics.render(&st, relays)); });
                },
                [=](const caf::error&) { self->answer([&] { return text(g->metrics.render(&st, {})); }); });
          },
          [=](const caf::error&) { self->answer([&] { return text(g->metrics.render(nullptr, {})); }); });
    }, 0);
  }

  /// Asks the coordinator for a membership change; answers {"epoch": E} or the error.
  template <class... Ts>
  void change_membership(Ts... xs) {
    auto self = shared_from_this();
    g_->ask(
      std::chrono::seconds(60),
      [self](std::uint64_t epoch) { self->answer([&] { return epoch_reply(epoch); }); },
      [self](const caf::error& err) { self->answer([&] { return mesh_error_reply(err); }); }, xs...);
  }

  connection_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  request req_;
  std::uint64_t id_ = 0;      ///< the gateway's number of the request being answered
  unsigned version_ = 11;     ///< of the request being answered
  bool keep_alive_ = false;   ///< of the request being answered
  std::shared_ptr<http_gateway::impl> g_;
  std::shared_ptr<completion_run> run_; ///< the completion being answered
  bool watching_ = false;               ///< watch_client's read is out
  std::function<void()> after_watch_;   ///< what follows it
  bool chunked_ = false;                ///< the stream's events go as HTTP chunks
  std::deque<std::string> out_;         ///< the stream's bytes to write, in order
  bool writing_ = false;
  bool stream_ending_ = false;
  bool closed_ = false;                 ///< the client went away
  asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>,
                             connection_strand>
    write_timer_; ///< a stream's write that takes too long
  std::uint64_t ticket_ = 0;            ///< its place in the admission queue, while waiting
};

} // namespace

void http_gateway::impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec,
                                                                          connection_socket socket) {
    if (ec)
      return; // closed
    beast::error_code ignored; // an answer or event goes out at once, not after the last ACK
    socket.set_option(tcp::no_delay(true), ignored);
    auto s = std::make_shared<session>(std::move(socket), self);
    std::erase_if(self->sessions, [](auto& w) { return w.expired(); });
    self->sessions.push_back(s);
    s->start();
    self->accept();
  });
}

http_gateway::http_gateway(caf::actor_system& sys, actors::coordinator_actor coordinator,
                           experts::model_config model, gateway_settings settings)
  : impl_(std::make_shared<impl>(sys, std::move(coordinator), std::move(model), std::move(settings))) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(impl_->s.host, ec);
  if (ec)
    throw std::runtime_error("gateway: \"" + impl_->s.host + "\" is not an IP address");
  const tcp::endpoint at{address, impl_->s.port};
  auto& a = impl_->acceptor;
  a.open(at.protocol(), ec);
  if (!ec)
    a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    a.bind(at, ec);
  if (!ec)
    a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("gateway: cannot listen at " + impl_->s.host + ":"
                             + std::to_string(impl_->s.port) + ": " + ec.message());
  impl_->accept();
  // The threads run until nothing is left to do: after the destructor closes everything.
  for (std::uint32_t t = 0; t < std::max<std::uint32_t>(impl_->s.io_threads, 1); ++t)
    impl_->threads.emplace_back([g = impl_.get()] { g->run(); });
}

http_gateway::~http_gateway() {
  // Close the acceptor and every connection, then let the aborted operations finish: their
  // handlers hold the sessions, and the sessions hold the gateway.
  asio::post(impl_->accept_strand, [g = impl_.get()] {
    beast::error_code ec;
    g->acceptor.close(ec);
    for (auto& w : g->sessions)
      if (auto s = w.lock())
        s->close_now();
  });
  for (auto& t : impl_->threads)
    t.join();
}

std::uint16_t http_gateway::port() const {
  return impl_->acceptor.local_endpoint().port();
}

} // namespace eoe::net
