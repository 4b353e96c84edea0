#pragma once
// The gateway's admission: at most max_running requests in the cluster at once; the next
// max_waiting wait in arrival order and start as running ones end; past that, refused (429).
// Thread-safe; a waiting request's start runs on the thread that ended a running one.

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <utility>

namespace eoe::net {

class admission {
public:
  admission(std::uint32_t max_running, std::uint32_t max_waiting)
    : max_running_(max_running), max_waiting_(max_waiting) {}

  enum class verdict { run, wait, refuse };

  /// run: the caller starts now (start is dropped); wait: start runs when a slot frees up
  /// (unless withdrawn with the ticket); refuse: full.
  verdict enter(std::function<void()> start, std::uint64_t* ticket = nullptr);

  /// A waiting request gives its place up (its client left); false when it is not waiting
  /// (any more).
  bool withdraw(std::uint64_t ticket);

  /// A running request ended: the oldest waiting one starts (outside the lock).
  void leave();

  std::uint32_t running() const;
  std::uint32_t waiting() const;
  /// Both at one moment: {running, waiting}.
  std::pair<std::uint32_t, std::uint32_t> counts() const;

private:
  mutable std::mutex mu_;
  std::uint32_t max_running_, max_waiting_;
  std::uint32_t running_ = 0;
  std::uint64_t next_ticket_ = 0;
  std::deque<std::pair<std::uint64_t, std::function<void()>>> waiting_;
};

} // namespace eoe::net
