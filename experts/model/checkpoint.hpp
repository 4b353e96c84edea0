#pragma once
// Checkpoints: one versioned binary file holding a model's config and every named tensor.
//
// Layout (little-endian), format version 1:
//   "EOECKPT\0"                      8-byte magic
//   u32 version                      = 1
//   u32 config_bytes, u32 config_crc the model config as canonical TOML, and its CRC-32
//   config_bytes bytes
//   u32 tensor_count
//   tensor_count times:
//     u16 name_bytes, name bytes
//     u8 dtype (1 = f32, 2 = bf16), u8 rank (= 2), u64 rows, u64 cols
//     u32 crc                        CRC-32 of this tensor's name, dtype, rank, dims and data
//     rows * cols * sizeof(dtype) data bytes, row-major
//   "EOEEND\0\0"                     8-byte end mark; nothing may follow
//
// Loading checks everything before it hands anything out: a truncated, corrupted or
// mismatched file yields an error naming the tensor and byte range at fault, and no model.

#include "experts/base/error.hpp"
#include "experts/model/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace eoe::experts {

inline constexpr std::uint32_t checkpoint_version = 1;

/// How tensors are stored on disk; loading always yields float32.
enum class storage_dtype : std::uint8_t { f32 = 1, bf16 = 2 };

/// The file's bytes for model m.
std::vector<char> checkpoint_bytes(const model& m, storage_dtype dtype = storage_dtype::f32);

/// Writes m to path atomically (a temporary file renamed into place).
expected<void> save_checkpoint(const model& m, const std::string& path,
                               storage_dtype dtype = storage_dtype::f32);

/// Parses checkpoint bytes; `source` names them in errors. With `expected_config`, the
/// embedded config must equal it.
expected<model> parse_checkpoint(const std::vector<char>& bytes, const std::string& source,
                                 const model_config* expected_config = nullptr);

/// Reads and parses a checkpoint file.
expected<model> load_checkpoint(const std::string& path,
                                const model_config* expected_config = nullptr);

} // namespace eoe::experts
