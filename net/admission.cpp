#include "net/admission.hpp"

#include <algorithm>

namespace eoe::net {

admission::verdict admission::enter(std::function<void()> start, std::uint64_t* ticket) {
  std::lock_guard lock{mu_};
  if (running_ < max_running_) {
    ++running_;
    return verdict::run;
  }
  if (waiting_.size() >= max_waiting_)
    return verdict::refuse;
  waiting_.emplace_back(++next_ticket_, std::move(start));
  if (ticket)
    *ticket = next_ticket_;
  return verdict::wait;
}

bool admission::withdraw(std::uint64_t ticket) {
  std::lock_guard lock{mu_};
  const auto it = std::find_if(waiting_.begin(), waiting_.end(),
                               [&](const auto& w) { return w.first == ticket; });
  if (it == waiting_.end())
    return false;
  waiting_.erase(it);
  return true;
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
    next = std::move(waiting_.front().second); // its slot passes on: running_ stays
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

std::pair<std::uint32_t, std::uint32_t> admission::counts() const {
  std::lock_guard lock{mu_};
  return {running_, static_cast<std::uint32_t>(waiting_.size())};
}

} // namespace eoe::net
