#pragma once
// Waiting in tests for what another thread or process makes true, bounded: a test that fails
// does not hang.

#include <chrono>
#include <thread>

namespace eoe::test {

/// Polls until pred holds or 20 s have passed; whether it holds.
template <class Pred>
bool eventually(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

} // namespace eoe::test
