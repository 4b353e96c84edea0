#include "actors/registry_file.hpp"

#include "experts/model/checkpoint.hpp"
#include "experts/base/crc32.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace eoe::actors {

namespace {

using experts::errc;
using experts::fail;
using json = nlohmann::ordered_json;

constexpr std::uint64_t format_version = 1;

std::string os_error(const std::string& what, const std::string& path) {
  return path + ": " + what + ": " + std::strerror(errno);
}

/// Reads a record's fields, each error naming the field.
struct field_reader {
  std::string source;
  std::string problem;

  const json* get(const json& obj, const std::string& key, const std::string& path,
                  json::value_t type, const char* expected) {
    if (!problem.empty())
      return nullptr;
    auto it = obj.find(key);
    if (it == obj.end()) {
      problem = source + ": " + path + key + ": missing (expected " + expected + ")";
      return nullptr;
    }
    const bool ok = type == json::value_t::number_unsigned ? it->is_number_unsigned()
                                                           : it->type() == type;
    if (!ok) {
      problem = source + ": " + path + key + ": expected " + expected + ", got " + it->dump();
      return nullptr;
    }
    return &*it;
  }
  std::string string(const json& obj, const std::string& key, const std::string& path = {}) {
    auto v = get(obj, key, path, json::value_t::string, "a string");
    return v ? v->get<std::string>() : std::string{};
  }
  std::uint64_t unsigned_(const json& obj, const std::string& key, const std::string& path = {}) {
    auto v = get(obj, key, path, json::value_t::number_unsigned, "an unsigned integer");
    return v ? v->get<std::uint64_t>() : 0;
  }
  bool boolean(const json& obj, const std::string& key, const std::string& path) {
    auto v = get(obj, key, path, json::value_t::boolean, "true or false");
    return v && v->get<bool>();
  }
  const json* array(const json& obj, const std::string& key, const std::string& path = {}) {
    return get(obj, key, path, json::value_t::array, "an array");
  }
};

std::string at(const std::string& key, size_t i) {
  return key + "[" + std::to_string(i) + "].";
}

} // namespace

std::uint32_t model_crc(const experts::model& m) {
  const auto bytes = experts::checkpoint_bytes(m);
  return experts::crc32(bytes.data(), bytes.size());
}

std::string registry_json(const registry_record& r) {
  json out;
  out["format"] = "eoe-registry";
  out["version"] = format_version;
  out["epoch"] = r.epoch;
  out["checkpoint"] = r.checkpoint;
  out["checkpoint_crc"] = r.checkpoint_crc;
  out["model"] = r.model_file;
  out["nodes"] = json::array();
  for (auto& n : r.nodes)
    out["nodes"].push_back(
      {{"name", n.name}, {"address", n.address}, {"joined", n.joined}, {"lost", n.lost}});
  out["layers"] = json::array();
  for (auto& l : r.layers)
    out["layers"].push_back(
      {{"members", l.members}, {"placement", l.placement}, {"next_id", l.next_id}});
  out["changes"] = r.changes;
  return out.dump(1) + "\n";
}

experts::expected<registry_record> parse_registry(std::string_view text, const std::string& source) {
  json in;
  try {
    in = json::parse(text);
  } catch (const json::parse_error& e) {
    return fail(errc::data_invalid, source + ": not JSON (byte " + std::to_string(e.byte) + ")");
  }
  if (!in.is_object())
    return fail(errc::data_invalid, source + ": expected a JSON object");
  field_reader f{source, {}};
  registry_record r;
  if (f.string(in, "format") != "eoe-registry" && f.problem.empty())
    f.problem = source + ": format: expected \"eoe-registry\"";
  if (auto v = f.unsigned_(in, "version"); f.problem.empty() && v != format_version)
    f.problem = source + ": version: " + std::to_string(v) + " is not supported (this eoe reads "
                + std::to_string(format_version) + ")";
  r.epoch = f.unsigned_(in, "epoch");
  if (f.problem.empty() && r.epoch == 0)
    f.problem = source + ": epoch: must be at least 1";
  r.checkpoint = f.string(in, "checkpoint");
  r.checkpoint_crc = static_cast<std::uint32_t>(f.unsigned_(in, "checkpoint_crc"));
  r.model_file = f.string(in, "model");
  if (f.problem.empty() && r.model_file.find('/') != std::string::npos)
    f.problem = source + ": model: expected a file name in the folder, got \"" + r.model_file + "\"";
  if (auto nodes = f.array(in, "nodes"))
    for (size_t i = 0; i < nodes->size() && f.problem.empty(); ++i) {
      const auto& n = (*nodes)[i];
      const auto path = at("nodes", i);
      if (!n.is_object()) {
        f.problem = source + ": " + path.substr(0, path.size() - 1) + ": expected an object";
        break;
      }
      registry_node node;
      node.name = f.string(n, "name", path);
      node.address = f.string(n, "address", path);
      node.joined = f.boolean(n, "joined", path);
      node.lost = f.string(n, "lost", path);
      r.nodes.push_back(std::move(node));
    }
  if (auto layers = f.array(in, "layers"))
    for (size_t i = 0; i < layers->size() && f.problem.empty(); ++i) {
      const auto& l = (*layers)[i];
      const auto path = at("layers", i);
      if (!l.is_object()) {
        f.problem = source + ": " + path.substr(0, path.size() - 1) + ": expected an object";
        break;
      }
      registry_layer layer;
      layer.next_id = static_cast<std::uint32_t>(f.unsigned_(l, "next_id", path));
      const auto* members = f.array(l, "members", path);
      const auto* placement = f.array(l, "placement", path);
      if (!f.problem.empty())
        break;
      if (members->size() != placement->size()) {
        f.problem = source + ": " + path + "placement: " + std::to_string(placement->size())
                    + " nodes for " + std::to_string(members->size()) + " members";
        break;
      }
      for (size_t m = 0; m < members->size(); ++m) {
        const auto& id = (*members)[m];
        const auto& node = (*placement)[m];
        if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= layer.next_id) {
          f.problem = source + ": " + path + "members[" + std::to_string(m)
                      + "]: expected a stable id below next_id " + std::to_string(layer.next_id)
                      + ", got " + id.dump();
          break;
        }
        if (!node.is_string()) {
          f.problem = source + ": " + path + "placement[" + std::to_string(m)
                      + "]: expected a node name, got " + node.dump();
          break;
        }
        layer.members.push_back(id.get<std::uint32_t>());
        layer.placement.push_back(node.get<std::string>());
      }
      r.layers.push_back(std::move(layer));
    }
  if (auto changes = f.array(in, "changes"))
    for (size_t i = 0; i < changes->size() && f.problem.empty(); ++i) {
      if (!(*changes)[i].is_string()) {
        f.problem = source + ": changes[" + std::to_string(i) + "]: expected a string";
        break;
      }
      r.changes.push_back((*changes)[i].get<std::string>());
    }
  // Every placement names a known node.
  for (size_t l = 0; l < r.layers.size() && f.problem.empty(); ++l)
    for (size_t m = 0; m < r.layers[l].placement.size(); ++m) {
      const auto& name = r.layers[l].placement[m];
      const bool known = std::any_of(r.nodes.begin(), r.nodes.end(),
                                     [&](const registry_node& n) { return n.name == name; });
      if (!known) {
        f.problem = source + ": layers[" + std::to_string(l) + "].placement[" + std::to_string(m)
                    + "]: node \"" + name + "\" is not in nodes";
        break;
      }
    }
  if (!f.problem.empty())
    return fail(errc::data_invalid, f.problem);
  return r;
}

experts::expected<void> write_file_durably(const std::string& path, std::string_view bytes) {
  const auto tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return fail(errc::io, os_error("cannot open for writing", tmp));
  size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      auto why = os_error("write failed", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(errc::io, why);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto why = os_error("fsync failed", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail(errc::io, why);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto why = os_error("cannot rename " + tmp + " over it", path);
    ::unlink(tmp.c_str());
    return fail(errc::io, why);
  }
  // The rename itself is durable once the folder's entry is.
  const auto dir = std::filesystem::path{path}.parent_path();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

experts::expected<void> write_registry(const std::string& dir, const registry_record& r,
                                       const experts::model* m) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return fail(errc::io, dir + ": cannot create the state folder: " + ec.message());
  if (!r.model_file.empty()) {
    if (!m)
      return fail(errc::data_invalid, "write_registry: the record names " + r.model_file
                                        + " but no model was given");
    const auto bytes = experts::checkpoint_bytes(*m);
    if (auto ok = write_file_durably((fs::path{dir} / r.model_file).string(),
                                     std::string_view{bytes.data(), bytes.size()});
        !ok)
      return ok;
  }
  if (auto ok = write_file_durably((fs::path{dir} / registry_name).string(), registry_json(r)); !ok)
    return ok;
  // Earlier epochs' models: nothing names them any more.
  for (const auto& entry : fs::directory_iterator{dir, ec}) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("epoch-") && name.ends_with(".ckpt") && name != r.model_file)
      fs::remove(entry.path(), ec);
  }
  return {};
}

experts::expected<std::optional<resumed_registry>> read_registry(const std::string& dir,
                                                                 const std::string& checkpoint,
                                                                 const experts::model& base) {
  namespace fs = std::filesystem;
  const auto path = (fs::path{dir} / registry_name).string();
  std::error_code ec;
  if (!fs::exists(path, ec) && !ec)
    return std::optional<resumed_registry>{};
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(errc::io, os_error("cannot read", path));
  std::stringstream text;
  text << in.rdbuf();
  auto r = parse_registry(text.str(), path);
  const auto afresh = " (remove " + path + " to start afresh from the checkpoint)";
  if (!r)
    return fail(r.error().code, r.error().message + afresh);
  std::optional<experts::model> model;
  if (!r->model_file.empty()) {
    auto m = experts::load_checkpoint((fs::path{dir} / r->model_file).string());
    if (!m)
      return fail(m.error().code, m.error().message + afresh);
    model = std::move(*m);
  }
  auto out = check_resumed(std::move(*r), std::move(model), checkpoint, base, path, afresh);
  if (!out)
    return fail(out.error().code, out.error().message);
  return std::optional<resumed_registry>{std::move(*out)};
}

experts::expected<resumed_registry> check_resumed(registry_record r, std::optional<experts::model> model,
                                                  const std::string& checkpoint,
                                                  const experts::model& base,
                                                  const std::string& where,
                                                  const std::string& afresh) {
  if (r.checkpoint != checkpoint)
    return fail(errc::checkpoint_mismatch,
                where + ": checkpoint: the registry was made from \"" + r.checkpoint
                  + "\", the cluster file names \"" + checkpoint + "\"" + afresh);
  if (const auto crc = model_crc(base); r.checkpoint_crc != crc)
    return fail(errc::checkpoint_mismatch,
                where + ": checkpoint_crc: the registry was made from a checkpoint with CRC "
                  + std::to_string(r.checkpoint_crc) + "; \"" + checkpoint + "\" now has "
                  + std::to_string(crc) + " (it was rewritten)" + afresh);
  resumed_registry out{std::move(r), model ? std::move(*model) : base};
  const auto& c = out.model.config;
  if (c.layers.size() != base.config.layers.size() || c.name != base.config.name)
    return fail(errc::checkpoint_mismatch,
                where + ": the registry's model (" + c.name + ", " + std::to_string(c.layers.size())
                  + " layers) is not the checkpoint's (" + base.config.name + ", "
                  + std::to_string(base.config.layers.size()) + " layers)" + afresh);
  if (out.record.layers.size() != c.layers.size())
    return fail(errc::data_invalid, where + ": layers: " + std::to_string(out.record.layers.size())
                                      + " entries for a model of " + std::to_string(c.layers.size())
                                      + " layers" + afresh);
  for (size_t l = 0; l < c.layers.size(); ++l)
    if (out.record.layers[l].members.size() != static_cast<size_t>(c.layers[l].experts))
      return fail(errc::data_invalid,
                  where + ": layers[" + std::to_string(l) + "].members: "
                    + std::to_string(out.record.layers[l].members.size()) + " members for a layer of "
                    + std::to_string(c.layers[l].experts) + " experts in its model" + afresh);
  return out;
}

namespace {

class folder_store final : public registry_store {
public:
  explicit folder_store(std::string dir) : dir_(std::move(dir)) {}
  std::string describe() const override {
    return (std::filesystem::path{dir_} / registry_name).string();
  }
  experts::expected<void> write(const registry_record& r, const experts::model* m) override {
    return write_registry(dir_, r, m);
  }
  experts::expected<std::optional<resumed_registry>> read(const std::string& checkpoint,
                                                          const experts::model& base) override {
    return read_registry(dir_, checkpoint, base);
  }

private:
  std::string dir_;
};

} // namespace

std::shared_ptr<registry_store> folder_registry(std::string dir) {
  return std::make_shared<folder_store>(std::move(dir));
}

} // namespace eoe::actors
