// The durable registry's file ([cluster] state_dir), without actors: a record round-trips,
// its model comes back byte for byte, a damaged or foreign record is refused with the field
// at fault and the way to start afresh, and a write leaves no temporary file behind.

#include "actors/registry_file.hpp"

#include "experts/model/checkpoint.hpp"
#include "experts/model/membership.hpp"
#include "mesh_model.hpp"
#include "node_processes.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace eoe;
using namespace eoe::actors;
namespace fs = std::filesystem;

namespace {

/// A record of the mesh test model (7 layers) after some changes.
registry_record sample_record(const experts::model& base, std::uint64_t epoch, std::string model) {
  registry_record r;
  r.epoch = epoch;
  r.checkpoint = test::checkpoint();
  r.checkpoint_crc = model_crc(base);
  r.model_file = std::move(model);
  r.nodes = {{"n1", "127.0.0.1:10000", false, ""},
             {"n2", "127.0.0.1:10001", false, "silent for 1000 ms"},
             {"n9", "10.0.0.9:4242", true, ""}};
  for (auto& l : base.config.layers) {
    registry_layer layer;
    for (std::uint32_t e = 0; e < static_cast<std::uint32_t>(l.experts); ++e) {
      layer.members.push_back(e);
      layer.placement.push_back(e % 2 ? "n9" : "n1");
    }
    layer.next_id = static_cast<std::uint32_t>(l.experts);
    r.layers.push_back(std::move(layer));
  }
  r.changes = {"epoch 1: the checkpoint's experts as the cluster file places them",
               "epoch 2: node n2 lost (silent for 1000 ms)"};
  return r;
}

std::string file_text(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

void put(const fs::path& p, const std::string& text) {
  std::ofstream{p, std::ios::binary} << text;
}

bool same(const registry_record& a, const registry_record& b) {
  if (a.epoch != b.epoch || a.checkpoint != b.checkpoint || a.checkpoint_crc != b.checkpoint_crc
      || a.model_file != b.model_file || a.changes != b.changes || a.nodes.size() != b.nodes.size()
      || a.layers.size() != b.layers.size())
    return false;
  for (size_t i = 0; i < a.nodes.size(); ++i)
    if (a.nodes[i].name != b.nodes[i].name || a.nodes[i].address != b.nodes[i].address
        || a.nodes[i].joined != b.nodes[i].joined || a.nodes[i].lost != b.nodes[i].lost)
      return false;
  for (size_t i = 0; i < a.layers.size(); ++i)
    if (a.layers[i].members != b.layers[i].members || a.layers[i].placement != b.layers[i].placement
        || a.layers[i].next_id != b.layers[i].next_id)
      return false;
  return true;
}

/// The mesh test model, as the cluster's checkpoint holds it.
experts::model test_model() {
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  return std::move(*m);
}

struct state_folder {
  fs::path dir = fs::temp_directory_path() / ("eoe_test_registry_" + std::to_string(getpid()));
  test::scratch_dir scratch{dir};
};

} // namespace

TEST_CASE("a registry record round-trips through its JSON", "[registry]") {
  auto base = test_model();
  const auto r = sample_record(base, 7, "epoch-7.ckpt");
  auto back = parse_registry(registry_json(r), "registry.json");
  REQUIRE(back.has_value());
  CHECK(same(*back, r));
}

TEST_CASE("a written registry reads back with its epoch's model, durably and without "
          "leftovers",
          "[registry]") {
  const state_folder state;
  auto base = test_model();
  // No folder, no registry: a fresh start.
  auto none = read_registry(state.dir.string(), test::checkpoint(), base);
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());

  // Epoch 1: the checkpoint's model as it is, no model file.
  auto r1 = sample_record(base, 1, "");
  REQUIRE(write_registry(state.dir.string(), r1, nullptr).has_value());
  auto got1 = read_registry(state.dir.string(), test::checkpoint(), base);
  REQUIRE(got1.has_value());
  REQUIRE(got1->has_value());
  CHECK(same((*got1)->record, r1));
  CHECK(experts::checkpoint_bytes((*got1)->model) == experts::checkpoint_bytes(base));

  // Epochs 2 and 3 remove experts: each names its own model file, the older one goes.
  auto m2 = experts::without_expert(base, 1, 2);
  REQUIRE(m2.has_value());
  auto r2 = sample_record(*m2, 2, "epoch-2.ckpt");
  r2.checkpoint_crc = r1.checkpoint_crc;
  r2.layers[1].members = {0, 1, 3};
  r2.layers[1].placement = {"n1", "n9", "n9"};
  r2.layers[1].next_id = 4;
  REQUIRE(write_registry(state.dir.string(), r2, &*m2).has_value());
  CHECK(fs::exists(state.dir / "epoch-2.ckpt"));
  auto m3 = experts::without_expert(*m2, 0, 0);
  REQUIRE(m3.has_value());
  auto r3 = r2;
  r3.epoch = 3;
  r3.model_file = "epoch-3.ckpt";
  r3.layers[0].members = {1, 2, 3, 4};
  r3.layers[0].placement = {"n9", "n1", "n9", "n1"};
  r3.changes.push_back("epoch 3: expert 0.0 removed");
  REQUIRE(write_registry(state.dir.string(), r3, &*m3).has_value());
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator{state.dir})
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"epoch-3.ckpt", "registry.json"});
  auto got3 = read_registry(state.dir.string(), test::checkpoint(), base);
  INFO((got3 ? std::string{} : got3.error().message));
  REQUIRE(got3.has_value());
  REQUIRE(got3->has_value());
  CHECK(same((*got3)->record, r3));
  CHECK(experts::checkpoint_bytes((*got3)->model) == experts::checkpoint_bytes(*m3));

  // A record that names a model file but is given none is refused before anything is written.
  auto r4 = r3;
  r4.epoch = 4;
  r4.model_file = "epoch-4.ckpt";
  auto no_model = write_registry(state.dir.string(), r4, nullptr);
  REQUIRE_FALSE(no_model.has_value());
  CHECK(no_model.error().message
        == "write_registry: the record names epoch-4.ckpt but no model was given");
  CHECK(same(parse_registry(file_text(state.dir / "registry.json"), "r").value(), r3));
}

TEST_CASE("a registry that does not fit the cluster's checkpoint is refused with the way to "
          "start afresh",
          "[registry]") {
  const state_folder state;
  auto base = test_model();
  const auto path = (state.dir / "registry.json").string();
  const auto afresh = " (remove " + path + " to start afresh from the checkpoint)";
  REQUIRE(write_registry(state.dir.string(), sample_record(base, 4, ""), nullptr).has_value());

  auto other_path = read_registry(state.dir.string(), "/elsewhere/model.ckpt", base);
  REQUIRE_FALSE(other_path.has_value());
  CHECK(other_path.error().message
        == path + ": checkpoint: the registry was made from \"" + test::checkpoint()
             + "\", the cluster file names \"/elsewhere/model.ckpt\"" + afresh);

  // The same path, rewritten with other weights.
  auto changed = base;
  changed.layers[0].experts[0].w1(0, 0) += 1.0f;
  auto rewritten = read_registry(state.dir.string(), test::checkpoint(), changed);
  REQUIRE_FALSE(rewritten.has_value());
  CHECK(rewritten.error().message
        == path + ": checkpoint_crc: the registry was made from a checkpoint with CRC "
             + std::to_string(model_crc(base)) + "; \"" + test::checkpoint() + "\" now has "
             + std::to_string(model_crc(changed)) + " (it was rewritten)" + afresh);

  // Members that are not the model's experts.
  auto r = sample_record(base, 4, "");
  r.layers[2].members.pop_back();
  r.layers[2].placement.pop_back();
  REQUIRE(write_registry(state.dir.string(), r, nullptr).has_value());
  auto short_layer = read_registry(state.dir.string(), test::checkpoint(), base);
  REQUIRE_FALSE(short_layer.has_value());
  CHECK(short_layer.error().message
        == path + ": layers[2].members: 3 members for a layer of 4 experts in its model" + afresh);

  // A record whose model file is gone.
  r = sample_record(base, 5, "epoch-5.ckpt");
  REQUIRE(write_registry(state.dir.string(), r, &base).has_value());
  fs::remove(state.dir / "epoch-5.ckpt");
  auto gone = read_registry(state.dir.string(), test::checkpoint(), base);
  REQUIRE_FALSE(gone.has_value());
  CHECK(gone.error().message.find((state.dir / "epoch-5.ckpt").string()) != std::string::npos);
  CHECK(gone.error().message.ends_with(afresh));
}

TEST_CASE("a damaged registry names the field at fault", "[registry]") {
  auto base = test_model();
  const auto good = nlohmann::ordered_json::parse(registry_json(sample_record(base, 3, "")));
  using edit = std::function<void(nlohmann::ordered_json&)>;
  const std::vector<std::pair<edit, std::string>> cases{
    {[](auto& j) { j["format"] = "toml"; }, "r.json: format: expected \"eoe-registry\""},
    {[](auto& j) { j["version"] = 2; }, "r.json: version: 2 is not supported (this eoe reads 1)"},
    {[](auto& j) { j.erase("epoch"); }, "r.json: epoch: missing (expected an unsigned integer)"},
    {[](auto& j) { j["epoch"] = -3; }, "r.json: epoch: expected an unsigned integer, got -3"},
    {[](auto& j) { j["epoch"] = 0; }, "r.json: epoch: must be at least 1"},
    {[](auto& j) { j["model"] = "../x.ckpt"; },
     "r.json: model: expected a file name in the folder, got \"../x.ckpt\""},
    {[](auto& j) { j["nodes"][1]["joined"] = "yes"; },
     "r.json: nodes[1].joined: expected true or false, got \"yes\""},
    {[](auto& j) { j["nodes"][2] = 5; }, "r.json: nodes[2]: expected an object"},
    {[](auto& j) { j["layers"][0]["members"][1] = 5; },
     "r.json: layers[0].members[1]: expected a stable id below next_id 5, got 5"},
    {[](auto& j) { j["layers"][3]["placement"].erase(0); },
     "r.json: layers[3].placement: 2 nodes for 3 members"},
    {[](auto& j) { j["layers"][1]["placement"][0] = "n7"; },
     "r.json: layers[1].placement[0]: node \"n7\" is not in nodes"},
    {[](auto& j) { j["changes"][0] = 1; }, "r.json: changes[0]: expected a string"},
  };
  for (auto& [change, message] : cases) {
    auto j = good;
    change(j);
    INFO(j.dump());
    auto r = parse_registry(j.dump(), "r.json");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == message);
  }
  auto cut = parse_registry(good.dump().substr(0, 40), "r.json");
  REQUIRE_FALSE(cut.has_value());
  CHECK(cut.error().message == "r.json: not JSON (byte 41)");
}

TEST_CASE("a registry write that cannot happen says where and keeps the last record",
          "[registry]") {
  const state_folder state;
  auto base = test_model();
  fs::create_directories(state.dir);
  put(state.dir / "file", "not a folder");
  auto r = write_registry((state.dir / "file" / "state").string(), sample_record(base, 1, ""),
                          nullptr);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.starts_with((state.dir / "file" / "state").string()
                                      + ": cannot create the state folder: "));
  // A folder where the record's temporary file must go: the old record stays whole.
  const auto rec1 = sample_record(base, 1, "");
  REQUIRE(write_registry(state.dir.string(), rec1, nullptr).has_value());
  fs::create_directories(state.dir / "registry.json.tmp" / "x");
  auto blocked = write_registry(state.dir.string(), sample_record(base, 2, ""), nullptr);
  REQUIRE_FALSE(blocked.has_value());
  CHECK(blocked.error().message.starts_with((state.dir / "registry.json.tmp").string()
                                            + ": cannot open for writing: "));
  CHECK(same(parse_registry(file_text(state.dir / "registry.json"), "r").value(), rec1));
}
