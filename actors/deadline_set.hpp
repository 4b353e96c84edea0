#pragma once
// Deadlines of many keys behind one timer. An actor arms one delayed message for the earliest
// deadline instead of one per request: CAF's clock thread is woken to set every delayed
// message and again to fire it, and the actor takes one more message for each (a serving
// composer armed two per token, an expert one per step). Plain C++, no CAF: the actor passes
// the times in and arms the timers add() and fire() ask for (actors/deadline_message.hpp).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace eoe::actors {

template <class Key>
class deadline_set {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  /// After a timer fires, the next is armed no sooner than `slack` later: deadlines closer
  /// together than that are handled by one timer, at most `slack` late.
  explicit deadline_set(clock::duration slack) : slack_(slack) {}

  /// Key's deadline, unless it has one already (which stays: whoever handles a key that fell
  /// due checks whether it still is). When no armed timer fires by `at`: the time to arm one.
  std::optional<time_point> add(const Key& key, time_point at) {
    if (!deadline_of_.emplace(key, at).second)
      return std::nullopt;
    by_time_.emplace(at, key);
    if (!armed_.empty() && *armed_.begin() <= at)
      return std::nullopt;
    armed_.insert(at);
    return at;
  }

  /// Key's deadline goes (it was met); a timer armed for it fires and finds nothing due.
  void erase(const Key& key) {
    const auto it = deadline_of_.find(key);
    if (it == deadline_of_.end())
      return;
    for (auto [b, e] = by_time_.equal_range(it->second); b != e; ++b)
      if (b->second == key) {
        by_time_.erase(b);
        break;
      }
    deadline_of_.erase(it);
  }

  /// The timer armed for `armed` fired at `now`: the keys whose deadline has come, earliest
  /// first; they leave the set. `rearm` gets the time to arm the next timer, if one is needed.
  std::vector<Key> fire(time_point armed, time_point now, std::optional<time_point>& rearm) {
    if (const auto it = armed_.find(armed); it != armed_.end())
      armed_.erase(it);
    std::vector<Key> due;
    while (!by_time_.empty() && by_time_.begin()->first <= now) {
      due.push_back(by_time_.begin()->second);
      deadline_of_.erase(by_time_.begin()->second);
      by_time_.erase(by_time_.begin());
    }
    rearm.reset();
    if (!by_time_.empty()) {
      const auto next = std::max(by_time_.begin()->first, now + slack_);
      if (armed_.empty() || next < *armed_.begin()) {
        armed_.insert(next);
        rearm = next;
      }
    }
    return due;
  }

  bool contains(const Key& key) const {
    return deadline_of_.contains(key);
  }
  size_t size() const noexcept {
    return by_time_.size();
  }

private:
  clock::duration slack_;
  std::multimap<time_point, Key> by_time_;
  std::map<Key, time_point> deadline_of_;
  std::multiset<time_point> armed_; ///< the timers armed and not fired
};

} // namespace eoe::actors
