#pragma once
// Comparing a presented secret (a join secret, an admin token) with the configured one.

#include <string_view>

namespace eoe::actors {

/// Whether `given` equals `want`, in time that depends on their lengths only, not on where
/// they first differ. An empty `want` matches nothing: whether "no secret configured" means
/// open or closed is the caller's policy.
inline bool secrets_match(std::string_view given, std::string_view want) noexcept {
  if (want.empty())
    return false;
  unsigned char diff = given.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(given[i] ^ want[i % want.size()]);
  return diff == 0;
}

} // namespace eoe::actors
