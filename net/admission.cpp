#include "net/admission.hpp"

namespace eoe::net {

admission::verdict admission::enter(std::function<void()> start) {
  std::lock_guard lock{mu_};
  if (running_ < max_running_) {
    ++running_;
    return verdict::run;
  }
  if (waiting_.size() >= max_waiting_)
    return verdict::refuse;
  waiting_.push_back(std::move(start));
  return verdict::wait;
}

void admission::leave() {
  std::function<void()> next;
  {
    std::lock_guard lock{mu_};
    if (waiting_.empty()) {
      if (running_ > 0)
        --running_;
      return;
    }
    next = std::move(waiting_.front()); // its slot passes on: running_ stays
    waiting_.pop_front();
  }
  next();
}

std::uint32_t admission::running() const {
  std::lock_guard lock{mu_};
  return running_;
}

std::uint32_t admission::waiting() const {
  std::lock_guard lock{mu_};
  return static_cast<std::uint32_t>(waiting_.size());
}

} // namespace eoe::net
