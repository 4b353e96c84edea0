#pragma once
// One request from a test to an actor (a coordinator, say): its answer, or the test fails with
// the error.

#include "actors/mesh_errc.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <utility>

namespace eoe::test {

/// The answer of type T that `to` gives to xs within `timeout`.
template <class T, class Handle, class... Ts>
T ask(caf::actor_system& sys, const Handle& to, std::chrono::seconds timeout, Ts... xs) {
  caf::scoped_actor self{sys};
  T out{};
  self->request(to, timeout, xs...)
    .receive([&](T& answer) { out = std::move(answer); },
             [&](const caf::error& err) { FAIL(actors::describe(err)); });
  return out;
}

} // namespace eoe::test
