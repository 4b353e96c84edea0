// Fuzz target: the checkpoint reader. Any bytes must give a model or an error naming the field,
// tensor or byte at fault.
#include "experts/checkpoint.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  if (auto m = eoe::experts::parse_checkpoint(bytes, "fuzz.ckpt"); !m && m.error().message.empty())
    __builtin_trap();
  return 0;
}
