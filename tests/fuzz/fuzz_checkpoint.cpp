// Fuzz target: the checkpoint reader, from the bytes to what the CLI prints. Any bytes must
// give a model or an error naming the field, tensor or byte at fault: non-empty, valid UTF-8,
// no control characters but newlines (an embedded config's problems, one a line), beginning
// with the file's name. A model prints as `eoe inspect` does and writes a checkpoint that
// reads back as the same model.
#include "experts/model/accounting.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/base/utf8.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  auto m = eoe::experts::parse_checkpoint(bytes, "fuzz.ckpt");
  if (!m) {
    const auto& message = m.error().message;
    if (message.empty() || !message.starts_with("fuzz.ckpt") || eoe::experts::find_invalid_utf8(message))
      __builtin_trap();
    for (char c : message)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f)
        __builtin_trap();
    return 0;
  }
  const auto shown = eoe::experts::format_account(m->config, eoe::experts::account(m->config));
  if (shown.empty() || eoe::experts::find_invalid_utf8(shown))
    __builtin_trap();
  auto again = eoe::experts::parse_checkpoint(eoe::experts::checkpoint_bytes(*m), "again.ckpt");
  if (!again || !(again->config == m->config))
    __builtin_trap();
  return 0;
}
