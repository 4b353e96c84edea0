#pragma once
// The registry a head keeps on disk ([cluster] state_dir): every membership epoch is written
// there durably before any node learns of it, so that a head that restarts resumes it (the
// same epoch number, members, placement and weights) instead of starting at epoch 1 from
// the checkpoint's experts. Plain code, no actors.
//
// The folder:
//   registry.json   the last epoch's record (below), replaced atomically: written to a
//                   temporary file, fsynced, renamed over the old one, the folder fsynced
//   epoch-N.ckpt    the epoch's model when its members differ from the checkpoint's (a
//                   hot-added expert's weights, a removed one's absence, a lowered k),
//                   written durably before the record that names it
//
// registry.json, format version 1:
//   {"format": "eoe-registry", "version": 1, "epoch": N, "checkpoint": PATH, "checkpoint_crc": C,
//    "model": "epoch-N.ckpt" or "" (the checkpoint's model as it is),
//    "nodes":  [{"name": S, "address": "host:port", "joined": BOOL, "lost": S}],
//    "layers": [{"members": [stable ids], "placement": [node names], "next_id": I}],
//    "changes": ["epoch 3: expert 1.8 added on n2 (init clone:1.3)", ...]}  (the last 64)

#include "experts/base/error.hpp"
#include "experts/model/model.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::actors {

struct registry_node {
  std::string name;
  std::string address; ///< host:port of its agent
  bool joined = false; ///< joined with `eoe node --join` (not in the cluster file)
  std::string lost;    ///< why it was lost ("" while alive)
};

struct registry_layer {
  std::vector<std::uint32_t> members; ///< stable ids in position order
  std::vector<std::string> placement; ///< per member: its node's name
  std::uint32_t next_id = 0;          ///< the id the next hot-added expert takes
};

/// One epoch as the registry knows it.
struct registry_record {
  std::uint64_t epoch = 0;
  std::string checkpoint; ///< the cluster's model file ("" = the embedded default)
  std::uint32_t checkpoint_crc = 0; ///< model_crc of the checkpoint's model
  std::string model_file; ///< the epoch's model in the folder ("" = the checkpoint's model)
  std::vector<registry_node> nodes;
  std::vector<registry_layer> layers;
  std::vector<std::string> changes; ///< what made each recent epoch, oldest first
};

/// A record and the model it names, as read back.
struct resumed_registry {
  registry_record record;
  experts::model model;
};

inline constexpr const char* registry_name = "registry.json";
inline constexpr size_t registry_changes_kept = 64;

/// CRC-32 of m's checkpoint bytes: whether the checkpoint a record was made from is the one
/// the nodes load now.
std::uint32_t model_crc(const experts::model& m);

/// The record's JSON text.
std::string registry_json(const registry_record& r);

/// Parses a record; errors name `source` and the field at fault.
experts::expected<registry_record> parse_registry(std::string_view text, const std::string& source);

/// Writes r to dir (created if missing): first `m` as r.model_file when r names one, then the
/// record, each durably; then removes the model files of earlier epochs.
experts::expected<void> write_registry(const std::string& dir, const registry_record& r,
                                       const experts::model* m);

/// The record in dir and its model (`base`, the checkpoint's model, when the record names no
/// file of its own); nullopt when dir holds no registry. A record that does not fit `base`
/// (another checkpoint or checkpoint_crc, other layers) is an error that says how to start
/// afresh.
experts::expected<std::optional<resumed_registry>> read_registry(const std::string& dir,
                                                                 const std::string& checkpoint,
                                                                 const experts::model& base);

/// Checks a record read back against the checkpoint the head loaded now (path, CRC, layers
/// and member counts) and pairs it with its model (`base` when it names none, else `model`);
/// errors name `where` and end with `afresh` (how to start from the checkpoint instead).
experts::expected<resumed_registry> check_resumed(registry_record r, std::optional<experts::model> model,
                                                  const std::string& checkpoint,
                                                  const experts::model& base,
                                                  const std::string& where,
                                                  const std::string& afresh);

/// Where a head keeps its registry: a folder of its own ([cluster] state_dir) or a consensus
/// store shared with standby heads (net/etcd_registry.hpp). Blocking calls, made from the
/// coordinator when an epoch is published and by a head that starts.
class registry_store {
public:
  virtual ~registry_store() = default;
  /// Where it is, for status lines ("/var/lib/eoe/registry.json", "etcd://h:2379 /eoe/c").
  virtual std::string describe() const = 0;
  /// Writes r durably (its model first, when it names one) before it returns.
  virtual experts::expected<void> write(const registry_record& r, const experts::model* m) = 0;
  /// The last record and its model; nullopt when there is none.
  virtual experts::expected<std::optional<resumed_registry>> read(const std::string& checkpoint,
                                                                  const experts::model& base) = 0;
};

/// The registry in a folder (write_registry, read_registry).
std::shared_ptr<registry_store> folder_registry(std::string dir);

/// Writes bytes to path so that after a crash path holds either its old content or all of
/// bytes: a temporary file beside it, fsync, rename, fsync of the folder.
experts::expected<void> write_file_durably(const std::string& path, std::string_view bytes);

} // namespace eoe::actors
