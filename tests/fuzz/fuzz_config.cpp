// Fuzz target: the TOML loaders (model config and cluster file). Any input must give a config
// or an error naming what is wrong; never a crash, a hang or an undefined behaviour.
#include "experts/model_config.hpp"
#include "net/cluster_config.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  if (auto m = eoe::experts::parse_model_config(text, "fuzz.toml"); !m && m.error().message.empty())
    __builtin_trap(); // an error must say what is wrong
  if (auto c = eoe::net::parse_cluster_config(text, "fuzz.toml"); !c && c.error().message.empty())
    __builtin_trap();
  return 0;
}
