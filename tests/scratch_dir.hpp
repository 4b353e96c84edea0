#pragma once
// What a test writes under the temp dir, removed however the test case ends (issue 26: ctest
// leaves nothing in /tmp, failed cases included; tests/check_tmp_clean.sh checks it).

#include <filesystem>
#include <system_error>

namespace eoe::test {

/// A test's folder or file under the temp dir, removed (all of it) when the guard goes: at the
/// end of the test case, however it ends (a failed REQUIRE unwinds it too). Declare it before
/// anything that writes there, processes that use it included, so that it goes last.
struct scratch_dir {
  std::filesystem::path path;
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

} // namespace eoe::test
