#pragma once
// The delayed message behind an actor's deadline_set: sent for the time the set asks a timer
// for, it comes back as (deadline_atom, that time) for the actor to fire the set with.

#include "actors/deadline_set.hpp"
#include "actors/messages.hpp"

#include <chrono>
#include <cstdint>
#include <optional>

namespace eoe::actors {

/// A time as the message carries it (steady-clock nanoseconds), and back.
inline std::uint64_t deadline_message_ticks(std::chrono::steady_clock::time_point t) {
  return static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}
inline std::chrono::steady_clock::time_point deadline_message_time(std::uint64_t ticks) {
  using clock = std::chrono::steady_clock;
  return clock::time_point{std::chrono::duration_cast<clock::duration>(
    std::chrono::nanoseconds{static_cast<std::int64_t>(ticks)})};
}

/// Arms the timer a deadline_set asked for at `now` (nothing when it asked for none).
template <class Self>
void arm_deadline_message(Self* self, std::optional<std::chrono::steady_clock::time_point> at,
                          std::chrono::steady_clock::time_point now) {
  if (at)
    self->delayed_send(self, *at - now, deadline_atom::value, deadline_message_ticks(*at));
}

} // namespace eoe::actors
