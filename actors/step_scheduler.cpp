#include "actors/step_scheduler.hpp"

#include <algorithm>
#include <stdexcept>

namespace eoe::actors {

step_scheduler::step_scheduler(std::uint32_t max_tokens, std::uint32_t max_in_flight)
  : max_tokens_(std::max<std::uint32_t>(max_tokens, 1)),
    max_in_flight_(std::max<std::uint32_t>(max_in_flight, 1)) {}

void step_scheduler::add(std::uint64_t feed, std::uint64_t epoch, std::uint32_t tokens,
                         bool alone) {
  if (tokens == 0)
    throw std::invalid_argument("step_scheduler: feed " + std::to_string(feed) + " has no tokens");
  if (!feeds_.emplace(feed, feed_state{epoch, tokens, 0, alone, false}).second)
    throw std::invalid_argument("step_scheduler: feed " + std::to_string(feed) + " is already in");
  order_.push_back(feed);
}

std::size_t step_scheduler::waiting() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, f] : feeds_)
    n += !f.running;
  return n;
}

std::optional<step_plan> step_scheduler::next() {
  if (in_flight_ >= max_in_flight_)
    return std::nullopt;
  // The oldest waiting feed leads: its epoch is the step's; alone, it is the step.
  auto lead = std::find_if(order_.begin(), order_.end(),
                           [&](std::uint64_t id) { return !feeds_.at(id).running; });
  if (lead == order_.end())
    return std::nullopt;
  step_plan step;
  auto& first = feeds_.at(*lead);
  step.epoch = first.epoch;
  if (first.alone) {
    step.alone = true;
    step.slices.push_back({*lead, first.next, first.tokens - first.next, 0});
    step.tokens = first.tokens - first.next;
    first.running = true;
    ++in_flight_;
    return step;
  }
  // Pass 1: one token of every waiting feed (a decode step, a prompt's first), oldest first.
  // Pass 2: the budget left goes to further tokens of the same feeds, oldest first.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> take; // feed, tokens
  std::uint32_t budget = max_tokens_;
  for (auto it = lead; it != order_.end() && budget > 0; ++it) {
    const auto& f = feeds_.at(*it);
    if (f.running || f.alone || f.epoch != step.epoch)
      continue;
    take.emplace_back(*it, 1);
    --budget;
  }
  for (auto& [id, n] : take) {
    if (budget == 0)
      break;
    const auto& f = feeds_.at(id);
    const auto more = std::min(budget, f.tokens - f.next - n);
    n += more;
    budget -= more;
  }
  std::uint32_t row = 0;
  for (auto [id, n] : take) {
    auto& f = feeds_.at(id);
    step.slices.push_back({id, f.next, n, row});
    row += n;
    f.running = true;
  }
  step.tokens = row;
  ++in_flight_;
  return step;
}

std::vector<std::uint64_t> step_scheduler::finished(const step_plan& step) {
  if (in_flight_ > 0)
    --in_flight_;
  std::vector<std::uint64_t> done;
  for (const auto& s : step.slices) {
    auto it = feeds_.find(s.feed);
    if (it == feeds_.end() || !it->second.running || it->second.next != s.first)
      continue; // dropped while its step ran
    auto& f = it->second;
    f.running = false;
    f.next += s.count;
    if (f.next >= f.tokens) {
      done.push_back(s.feed);
      feeds_.erase(it);
      order_.remove(s.feed);
    }
  }
  return done;
}

void step_scheduler::drop(std::uint64_t feed) {
  if (feeds_.erase(feed) > 0)
    order_.remove(feed);
}

} // namespace eoe::actors
