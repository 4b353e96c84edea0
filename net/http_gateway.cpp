#include "net/http_gateway.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/plan.hpp"
#include "actors/secret.hpp"
#include "net/gateway_metrics.hpp"
#include "net/infer_json.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <caf/event_based_actor.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

namespace eoe::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using nlohmann::json;

using response = http::response<http::string_body>;
using request = http::request<http::string_body>;

namespace {

/// The HTTP status for a mesh or CAF error.
http::status status_of(const caf::error& err) {
  if (err.category() == actors::mesh_category) {
    switch (static_cast<actors::mesh_errc>(err.code())) {
      case actors::mesh_errc::bad_request: return http::status::bad_request;
      case actors::mesh_errc::deadline_exceeded: return http::status::gateway_timeout;
      case actors::mesh_errc::not_ready:
      case actors::mesh_errc::node_lost: return http::status::service_unavailable;
      case actors::mesh_errc::internal: return http::status::internal_server_error;
      case actors::mesh_errc::unauthorized: return http::status::forbidden;
      case actors::mesh_errc::link_failed: return http::status::bad_gateway;
    }
  }
  if (err == caf::sec::request_timeout)
    return http::status::gateway_timeout;
  return http::status::bad_gateway;
}

std::string outcome_of(const caf::error& err) {
  if (err.category() == actors::mesh_category) {
    switch (static_cast<actors::mesh_errc>(err.code())) {
      case actors::mesh_errc::bad_request: return "bad_request";
      case actors::mesh_errc::deadline_exceeded: return "deadline_exceeded";
      case actors::mesh_errc::not_ready: return "not_ready";
      case actors::mesh_errc::node_lost: return "node_lost";
      case actors::mesh_errc::internal: return "internal";
      case actors::mesh_errc::unauthorized: return "unauthorized";
      case actors::mesh_errc::link_failed: return "link_failed";
    }
  }
  return err == caf::sec::request_timeout ? "deadline_exceeded" : "error";
}

} // namespace

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
  tcp::acceptor acceptor{io};
  std::thread thread;
  gateway_metrics metrics;
  std::atomic<std::int64_t> in_flight{0};
  std::vector<std::weak_ptr<closable>> sessions; ///< io thread only

  impl(caf::actor_system& system, actors::coordinator_actor c, experts::model_config m,
       gateway_settings settings)
    : sys(system), coordinator(std::move(c)), model(std::move(m)), s(std::move(settings)) {}

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

class session : public closable, public std::enable_shared_from_this<session> {
public:
  void close_now() override {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  session(tcp::socket socket, std::shared_ptr<http_gateway::impl> g)
    : stream_(std::move(socket)), g_(std::move(g)) {}

  void start() {
    read();
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
    if (ec == http::error::body_limit) {
      fail(11, false, http::status::payload_too_large,
           "the body is larger than " + std::to_string(g_->s.max_body_bytes) + " bytes");
      return;
    }
    if (ec == http::error::header_limit) {
      fail(11, false, http::status::request_header_fields_too_large,
           "the header is larger than 16384 bytes");
      return;
    }
    if (ec) {
      fail(11, false, http::status::bad_request, "malformed HTTP: " + ec.message());
      return;
    }
    req_ = parser_->release();
    handle();
  }

  void fail(unsigned version, bool keep_alive, http::status code, const std::string& what) {
    send(error_response(version, keep_alive, code, what));
  }

  /// {"error": "..."} with its status.
  static response error_response(unsigned version, bool keep_alive, http::status code,
                                 const std::string& what) {
    return make(version, keep_alive, code, "application/json", json{{"error", what}}.dump() + "\n");
  }

  static response make(unsigned version, bool keep_alive, http::status code,
                       const std::string& type, std::string body) {
    response res{code, version};
    res.set(http::field::server, "eoe");
    res.set(http::field::content_type, type);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  /// Sends a response made on another thread.
  void post(response res) {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), res = std::move(res)]() mutable { self->send(std::move(res)); });
  }

  void send(response res) {
    g_->metrics.http_response(res.result_int());
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

  bool admin_ok() {
    if (g_->s.admin_token.empty()) {
      fail(req_.version(), req_.keep_alive(), http::status::forbidden,
           "no admin token is configured on this gateway; membership changes are off");
      return false;
    }
    const auto field = req_[http::field::authorization];
    const std::string_view auth{field.data(), field.size()};
    constexpr std::string_view bearer = "Bearer ";
    if (!auth.starts_with(bearer) || !actors::secrets_match(auth.substr(bearer.size()), g_->s.admin_token)) {
      auto res = make(req_.version(), req_.keep_alive(), http::status::unauthorized,
                      "application/json",
                      json{{"error", "an admin call needs \"Authorization: Bearer <token>\" with the "
                                     "gateway's admin token"}}.dump() + "\n");
      res.set(http::field::www_authenticate, "Bearer");
      send(std::move(res));
      return false;
    }
    return true;
  }

  void method_not_allowed(const char* allow) {
    auto res = make(req_.version(), req_.keep_alive(), http::status::method_not_allowed,
                    "application/json",
                    json{{"error", std::string(req_.method_string()) + " is not allowed here; use "
                                     + allow}}.dump() + "\n");
    res.set(http::field::allow, allow);
    send(std::move(res));
  }

  void handle() {
    std::string path{req_.target()};
    if (auto q = path.find('?'); q != std::string::npos)
      path.resize(q);
    const auto method = req_.method();
    if (path == "/v1/infer")
      return method == http::verb::post ? infer() : method_not_allowed("POST");
    if (path == "/healthz")
      return method == http::verb::get ? health() : method_not_allowed("GET");
    if (path == "/v1/topology")
      return method == http::verb::get ? topology() : method_not_allowed("GET");
    if (path == "/metrics")
      return method == http::verb::get ? scrape() : method_not_allowed("GET");
    if (path == "/v1/experts")
      return method == http::verb::post ? add_expert() : method_not_allowed("POST");
    if (path.starts_with("/v1/experts/"))
      return method == http::verb::delete_ ? remove_expert(path.substr(12))
                                           : method_not_allowed("DELETE");
    fail(req_.version(), req_.keep_alive(), http::status::not_found,
         "no such path: " + path + " (try /v1/infer, /v1/topology, /v1/experts, /metrics, /healthz)");
  }

  void infer() {
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    actors::infer_request r;
    try {
      r = parse_infer_body(req_.body(), {static_cast<std::uint32_t>(g_->model.input_dim > 0
                                                                       ? g_->model.input_dim
                                                                       : g_->model.dim),
                                         g_->s.max_tokens, g_->s.deadline_ms});
    } catch (const std::exception& e) {
      g_->metrics.request_done("bad_request", 0, nullptr);
      fail(version, keep, http::status::bad_request, e.what());
      return;
    }
    const auto now = ++g_->in_flight;
    if (now > static_cast<std::int64_t>(g_->s.max_concurrency)) {
      g_->metrics.in_flight(--g_->in_flight);
      g_->metrics.request_done("overloaded", 0, nullptr);
      fail(version, keep, http::status::too_many_requests,
           "the gateway has " + std::to_string(g_->s.max_concurrency)
             + " requests in flight already; try again");
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
      [self, version, keep, done](actors::infer_result& res) {
        std::string body;
        try {
          body = infer_result_json(res) + "\n";
        } catch (const std::exception& e) {
          done("internal", nullptr);
          self->post(error_response(version, keep, http::status::internal_server_error, e.what()));
          return;
        }
        done("ok", &res);
        self->post(make(version, keep, http::status::ok, "application/json", std::move(body)));
      },
      [self, version, keep, done](const caf::error& err) {
        done(outcome_of(err), nullptr);
        self->post(error_response(version, keep, status_of(err), actors::describe(err)));
      },
      actors::infer_atom::value, std::move(r));
  }

  void health() {
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    auto self = shared_from_this();
    g_->ask(
      std::chrono::seconds(5),
      [self, version, keep](const actors::cluster_status& st) {
        if (st.epoch > 0)
          self->post(make(version, keep, http::status::ok, "text/plain", "ok\n"));
        else
          self->post(error_response(version, keep, http::status::service_unavailable,
                                    "the cluster is still starting"));
      },
      [self, version, keep](const caf::error& err) {
        self->post(error_response(version, keep, http::status::service_unavailable, actors::describe(err)));
      },
      actors::status_atom::value);
  }

  void topology() {
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    auto self = shared_from_this();
    g_->ask(
      std::chrono::seconds(5),
      [self, version, keep](const actors::cluster_status& st) {
        json nodes = json::array();
        for (size_t i = 0; i < st.nodes.size(); ++i)
          nodes.push_back({{"name", st.nodes[i]},
                           {"address", i < st.addresses.size() ? st.addresses[i] : ""},
                           {"alive", i < st.alive.size() && st.alive[i]},
                           {"experts", i < st.experts_per_node.size() ? st.experts_per_node[i] : 0}});
        const json body = {{"epoch", st.epoch},       {"model", st.model},
                           {"checkpoint", st.checkpoint}, {"nodes", nodes},
                           {"experts", st.experts},   {"live_epochs", st.live_epochs},
                           {"requests_served", st.requests_served},
                           {"requests_failed", st.requests_failed},
                           {"in_flight", st.in_flight}};
        self->post(make(version, keep, http::status::ok, "application/json", body.dump() + "\n"));
      },
      [self, version, keep](const caf::error& err) {
        self->post(error_response(version, keep, status_of(err), actors::describe(err)));
      },
      actors::status_atom::value);
  }

  void scrape() {
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    auto self = shared_from_this();
    auto g = g_;
    g_->sys.spawn([self, g, version, keep](caf::event_based_actor* a, int) { // (see ask)
      a->request(g->coordinator, std::chrono::seconds(5), actors::status_atom::value)
        .then(
          [=](const actors::cluster_status& st) {
            a->request(g->coordinator, std::chrono::seconds(5), actors::stats_atom::value)
              .then(
                [=](const std::vector<actors::relay_stats>& relays) {
                  self->post(make(version, keep, http::status::ok,
                                  "text/plain; version=0.0.4", g->metrics.render(st.nodes, relays)));
                },
                [=](const caf::error&) {
                  self->post(make(version, keep, http::status::ok, "text/plain; version=0.0.4",
                                  g->metrics.render({}, {})));
                });
          },
          [=](const caf::error&) {
            self->post(make(version, keep, http::status::ok, "text/plain; version=0.0.4",
                            g->metrics.render({}, {})));
          });
    }, 0);
  }

  /// Asks the coordinator for a membership change; answers {"epoch": E} or the error.
  template <class... Ts>
  void change_membership(Ts... xs) {
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    auto self = shared_from_this();
    g_->ask(
      std::chrono::seconds(60),
      [self, version, keep](std::uint64_t epoch) {
        self->post(make(version, keep, http::status::ok, "application/json",
                        json{{"epoch", epoch}}.dump() + "\n"));
      },
      [self, version, keep](const caf::error& err) {
        self->post(error_response(version, keep, status_of(err), actors::describe(err)));
      },
      xs...);
  }

  void add_expert() {
    if (!admin_ok())
      return;
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    std::uint32_t layer = 0;
    std::string node, init = "zero";
    try {
      const auto j = json::parse(req_.body());
      if (!j.is_object())
        throw std::invalid_argument("the body must be a JSON object");
      for (auto& [k, v] : j.items())
        if (k != "layer" && k != "node" && k != "init")
          throw std::invalid_argument("unknown field \"" + k + "\" (known: layer, node, init)");
      if (!j.contains("layer") || !j["layer"].is_number_unsigned() || j["layer"].get<std::uint64_t>() > 1u << 20)
        throw std::invalid_argument("\"layer\" must be a small unsigned integer");
      if (!j.contains("node") || !j["node"].is_string())
        throw std::invalid_argument("\"node\" must be the name of a node (a string)");
      if (j.contains("init") && !j["init"].is_string())
        throw std::invalid_argument("\"init\" must be zero, clone:L.E or checkpoint:FILE[:L.E]");
      layer = j["layer"].get<std::uint32_t>();
      node = j["node"].get<std::string>();
      if (j.contains("init"))
        init = j["init"].get<std::string>();
    } catch (const std::exception& e) {
      fail(version, keep, http::status::bad_request, e.what());
      return;
    }
    change_membership(actors::add_expert_atom::value, layer, node, init);
  }

  void remove_expert(const std::string& which) {
    if (!admin_ok())
      return;
    const auto version = req_.version();
    const bool keep = req_.keep_alive();
    unsigned layer = 0, id = 0;
    char tail = 0;
    if (std::sscanf(which.c_str(), "%u.%u%c", &layer, &id, &tail) != 2
        || which.find_first_not_of("0123456789.") != std::string::npos) {
      fail(version, keep, http::status::bad_request,
           "\"" + which + "\" does not name an expert as LAYER.ID, e.g. /v1/experts/1.3");
      return;
    }
    change_membership(actors::remove_expert_atom::value, static_cast<std::uint32_t>(layer),
                      static_cast<std::uint32_t>(id));
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  request req_;
  std::shared_ptr<http_gateway::impl> g_;
};

} // namespace

void http_gateway::impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
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
  // The thread runs until nothing is left to do: after the destructor closes everything.
  impl_->thread = std::thread([g = impl_.get()] { g->io.run(); });
}

http_gateway::~http_gateway() {
  // Close the acceptor and every connection, then let the aborted operations finish: their
  // handlers hold the sessions, and the sessions hold the gateway.
  asio::post(impl_->io, [g = impl_.get()] {
    beast::error_code ec;
    g->acceptor.close(ec);
    for (auto& w : g->sessions)
      if (auto s = w.lock())
        s->close_now();
  });
  impl_->thread.join();
}

std::uint16_t http_gateway::port() const {
  return impl_->acceptor.local_endpoint().port();
}

} // namespace eoe::net
