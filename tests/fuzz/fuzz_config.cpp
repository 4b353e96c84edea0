// Fuzz target: the TOML loaders (model config and cluster file), from the bytes to what the CLI
// prints. Any input must give a config or an error naming what is wrong; never a crash, a hang
// or an undefined behaviour. An error is what `eoe` prints: non-empty, valid UTF-8, no control
// characters but the newlines between its problems, every line "fuzz.toml:LINE:COL: ...". A
// model config prints as `eoe inspect` does (valid UTF-8), and its canonical TOML reads back
// as the same config.
#include "experts/model/accounting.hpp"
#include "experts/base/model_config.hpp"
#include "net/cluster_config.hpp"
#include "net/tls_context.hpp"
#include "experts/base/utf8.hpp"

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

// The target links the parsers, not OpenSSL: check_tls (net/tls_context.cpp, which reads and
// checks the [tls] files) is replaced here by one that reads nothing and reports every file
// named as the real one reports a file it cannot read: by its path, as the file gives it.
namespace eoe::net {

std::string_view to_string(tls_field f) noexcept {
  constexpr std::string_view names[] = {"certificate", "key", "ca", "passphrase"};
  return names[static_cast<int>(f)];
}

std::vector<tls_problem> check_tls(const tls_settings& tls) {
  std::vector<tls_problem> out;
  for (auto [field, path] : {std::pair{tls_field::certificate, &tls.certificate},
                             std::pair{tls_field::key, &tls.key}, std::pair{tls_field::ca, &tls.ca}})
    out.push_back({field, "cannot read \"" + *path + "\": (not read while fuzzing)"});
  return out;
}

} // namespace eoe::net

namespace {

void check_error(const std::string& message) {
  if (message.empty() || eoe::experts::find_invalid_utf8(message))
    __builtin_trap();
  for (char c : message)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f)
      __builtin_trap();
  std::istringstream lines{message};
  for (std::string line; std::getline(lines, line);)
    if (!line.starts_with("fuzz.toml:") || line.size() > 1200)
      __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  if (auto m = eoe::experts::parse_model_config(text, "fuzz.toml"); !m) {
    check_error(m.error().message);
  } else {
    const auto shown = eoe::experts::format_account(*m, eoe::experts::account(*m));
    if (shown.empty() || eoe::experts::find_invalid_utf8(shown))
      __builtin_trap();
    auto again = eoe::experts::parse_model_config(eoe::experts::to_toml(*m), "fuzz.toml");
    if (!again || !(*again == *m))
      __builtin_trap();
  }
  if (auto c = eoe::net::parse_cluster_config(text, "fuzz.toml"); !c)
    check_error(c.error().message);
  return 0;
}
