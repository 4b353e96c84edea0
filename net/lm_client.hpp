#pragma once
// A language-model session on a cluster, as a sequence decoder (experts/model/lm_generate.hpp):
// each feed sends the tokens to the session at its next position and waits for their logits.
// The cluster keeps the keys and values of every attention layer in its context shards; the
// session is closed (its contexts dropped) on restart and when this object goes.

#include "actors/interfaces.hpp"
#include "experts/model/lm_generate.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <cstdint>

namespace eoe::net {

class cluster_session final : public experts::sequence_decoder {
public:
  /// Opens a session; throws std::runtime_error with the cluster's reason when it cannot
  /// (not a language model, too many sessions, no answer).
  cluster_session(caf::actor_system& sys, actors::coordinator_actor coordinator,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~cluster_session() override;
  cluster_session(const cluster_session&) = delete;
  cluster_session& operator=(const cluster_session&) = delete;

  /// Throws std::runtime_error naming the request's failure (the session is then broken on
  /// the cluster: restart() opens a new one).
  matrix feed(std::span<const std::uint8_t> tokens) override;
  void restart() override;
  std::int64_t position() const override {
    return static_cast<std::int64_t>(position_);
  }

  std::uint64_t id() const noexcept {
    return session_;
  }

  /// Trace every request from now on (the cluster's [trace] dir and collector get them).
  void trace(bool on) noexcept {
    trace_ = on;
  }

private:
  void open();
  void close() noexcept;

  caf::scoped_actor self_;
  actors::coordinator_actor coordinator_;
  std::chrono::milliseconds timeout_;
  std::uint64_t session_ = 0;
  std::uint64_t position_ = 0;
  bool trace_ = false;
};

} // namespace eoe::net
