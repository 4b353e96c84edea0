#pragma once
// The gateway's admission: at most max_running requests in the cluster at once; the next
// max_waiting wait in arrival order and start as running ones end; past that, refused (429).
// Thread-safe; a waiting request's start runs on the thread that ended a running one.

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

namespace eoe::net {

class admission {
public:
  admission(std::uint32_t max_running, std::uint32_t max_waiting)
    : max_running_(max_running), max_waiting_(max_waiting) {}

  enum class verdict { run, wait, refuse };

  /// run: the caller starts now (start is dropped); wait: start runs when a slot frees up;
  /// refuse: full.
  verdict enter(std::function<void()> start);

  /// A running request ended: the oldest waiting one starts (outside the lock).
  void leave();

  std::uint32_t running() const;
  std::uint32_t waiting() const;

private:
  mutable std::mutex mu_;
  std::uint32_t max_running_, max_waiting_;
  std::uint32_t running_ = 0;
  std::deque<std::function<void()>> waiting_;
};

} // namespace eoe::net
