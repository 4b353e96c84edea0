#include "net/http_gateway.hpp"

#include "actors/plan.hpp"
#include "net/gateway_metrics.hpp"
#include "net/gateway_routes.hpp"
#include "net/infer_json.hpp"
#include "experts/utf8.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <caf/event_based_actor.hpp>

#include <atomic>
#include <chrono>
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
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::uint64_t> requests{0}; ///< numbers each request, for its log line
  std::vector<std::weak_ptr<closable>> sessions; ///< on accept_strand only

  impl(caf::actor_system& system, actors::coordinator_actor c, experts::model_config m,
       gateway_settings settings)
    : sys(system), coordinator(std::move(c)), model(std::move(m)), s(std::move(settings)) {
    routes.infer = {static_cast<std::uint32_t>(model.input_dim > 0 ? model.input_dim : model.dim),
                    s.max_tokens, s.deadline_ms};
    routes.admin_token = s.admin_token;
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
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->stream_.socket().close(ignored);
    });
  }

  session(tcp::socket socket, std::shared_ptr<http_gateway::impl> g)
    : stream_(std::move(socket)), g_(std::move(g)) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

private:
  void read() {
    parser_.emplace();
    parser_->body_limit(g_->s.max_body_bytes);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(60));
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

  void dispatch(gateway_action action) {
    std::visit(overloaded{
                 [&](gateway_reply& r) {
                   if (!r.outcome.empty())
                     g_->metrics.request_done(r.outcome, 0, nullptr);
                   send(std::move(r));
                 },
                 [&](infer_call& c) { infer(std::move(c.request)); },
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

  void infer(actors::infer_request r) {
    const auto now = ++g_->in_flight;
    if (now > static_cast<std::int64_t>(g_->s.max_concurrency)) {
      g_->metrics.in_flight(--g_->in_flight);
      g_->metrics.request_done("overloaded", 0, nullptr);
      send(error_reply(http::status::too_many_requests,
                       "the gateway has " + std::to_string(g_->s.max_concurrency)
                         + " requests in flight already; try again"));
      return;
    }
    g_->metrics.in_flight(now);
    const auto start = std::chrono::steady_clock::now();
    const auto timeout = std::chrono::milliseconds(r.deadline_ms) + std::chrono::seconds(2);
    auto self = shared_from_this();
    auto done = [self, start](const std::string& outcome, const actors::infer_result* res) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      self->g_->metrics.request_done(outcome, secs, res);
      self->g_->metrics.in_flight(--self->g_->in_flight);
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
                  self->answer([&] { return text(g->metrics.render(st.nodes, relays)); });
                },
                [=](const caf::error&) { self->answer([&] { return text(g->metrics.render({}, {})); }); });
          },
          [=](const caf::error&) { self->answer([&] { return text(g->metrics.render({}, {})); }); });
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

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  request req_;
  std::uint64_t id_ = 0;      ///< the gateway's number of the request being answered
  unsigned version_ = 11;     ///< of the request being answered
  bool keep_alive_ = false;   ///< of the request being answered
  std::shared_ptr<http_gateway::impl> g_;
};

} // namespace

void http_gateway::impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec,
                                                                          tcp::socket socket) {
    if (ec)
      return; // closed
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
