#pragma once
// Errors of the experts folder (configs, checkpoints, models): values that name the field,
// the expected and the actual value.

#include <cstdint>
#include "kernels/expected.hpp"
#include <string>

namespace eoe::experts {

enum class errc : std::uint8_t {
  config_syntax,       ///< the TOML does not parse
  config_invalid,      ///< unknown key, wrong type, out-of-range or missing value
  io,                  ///< a file could not be opened, read or written
  checkpoint_format,   ///< bad magic, unsupported version, truncated or malformed layout
  checkpoint_corrupt,  ///< a checksum does not match its bytes
  checkpoint_mismatch, ///< tensors or shapes differ from what the config expects
  data_invalid,        ///< an input (dataset file, tensor) is malformed
};

struct error {
  errc code;
  std::string message;
};

template <class T>
using expected = basic_expected<T, error>;

inline unexpected<error> fail(errc code, std::string message) {
  return unexpected(error{code, std::move(message)});
}

} // namespace eoe::experts
