#include "net/lm_client.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"

#include <stdexcept>
#include <vector>

namespace eoe::net {

cluster_session::cluster_session(caf::actor_system& sys, actors::coordinator_actor coordinator,
                                 std::chrono::milliseconds timeout)
  : self_(sys), coordinator_(std::move(coordinator)), timeout_(timeout) {
  open();
}

cluster_session::~cluster_session() {
  close();
}

void cluster_session::open() {
  std::string why;
  self_->request(coordinator_, timeout_, actors::session_atom::value)
    .receive([&](std::uint64_t id) { session_ = id; },
             [&](caf::error& err) { why = actors::describe(err); });
  if (session_ == 0)
    throw std::runtime_error("opening a session: " + why);
  position_ = 0;
}

void cluster_session::close() noexcept {
  if (session_ == 0)
    return;
  self_->request(coordinator_, timeout_, actors::drop_atom::value, session_)
    .receive([](actors::ok_atom) {}, [](caf::error&) {}); // a broken session goes either way
  session_ = 0;
}

matrix cluster_session::feed(std::span<const std::uint8_t> tokens) {
  actors::infer_request req;
  req.ids = actors::pack(std::vector<std::uint64_t>(tokens.begin(), tokens.end()));
  req.session = session_;
  req.position = position_;
  req.want_record = false;
  req.trace = trace_;
  req.deadline_ms = static_cast<std::uint32_t>(timeout_.count());
  matrix logits;
  std::string why;
  self_->request(coordinator_, timeout_ + std::chrono::seconds(5), actors::infer_atom::value,
                 std::move(req))
    .receive(
      [&](actors::infer_result& r) {
        try {
          logits = actors::from_wire(r.output, "the cluster's logits");
        } catch (const std::exception& e) {
          why = e.what();
        }
      },
      [&](caf::error& err) { why = actors::describe(err); });
  if (!why.empty())
    throw std::runtime_error("session " + std::to_string(session_) + " at position "
                             + std::to_string(position_) + ": " + why);
  if (logits.rows() != static_cast<Eigen::Index>(tokens.size()))
    throw std::runtime_error("session " + std::to_string(session_) + ": "
                             + std::to_string(logits.rows()) + " rows of logits for "
                             + std::to_string(tokens.size()) + " tokens");
  position_ += tokens.size();
  return logits;
}

void cluster_session::restart() {
  close();
  open();
}

} // namespace eoe::net
