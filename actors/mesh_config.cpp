#include "actors/mesh_config.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/plan.hpp"

#include <caf/io/middleman.hpp>

#include <algorithm>
#include <thread>

namespace eoe::actors {

namespace {

const char* errc_name(std::uint8_t code) {
  switch (static_cast<mesh_errc>(code)) {
    case mesh_errc::deadline_exceeded: return "deadline_exceeded";
    case mesh_errc::bad_request: return "bad_request";
    case mesh_errc::not_ready: return "not_ready";
    case mesh_errc::node_lost: return "node_lost";
    case mesh_errc::internal: return "internal";
    case mesh_errc::unauthorized: return "unauthorized";
    case mesh_errc::link_failed: return "link_failed";
  }
  return "unknown";
}

std::string render_mesh_error(std::uint8_t code, caf::atom_value, const caf::message& ctx) {
  std::string out = errc_name(code);
  if (ctx.match_elements<std::string>())
    out += ": " + ctx.get_as<std::string>(0);
  return out;
}

} // namespace

std::string describe(const caf::error& err) {
  if (err.category() == mesh_category)
    return render_mesh_error(err.code(), err.category(), err.context());
  return caf::to_string(err);
}

mesh_config::mesh_config() {
  add_message_type<wire_tensor>("wire_tensor");
  add_message_type<infer_request>("infer_request");
  add_message_type<wire_layer_record>("wire_layer_record");
  add_message_type<infer_result>("infer_result");
  add_message_type<contribution>("contribution");
  add_message_type<score_share>("score_share");
  add_message_type<expert_record>("expert_record");
  add_message_type<relay_stats>("relay_stats");
  add_message_type<serving_stats>("serving_stats");
  add_message_type<decode_item>("decode_item");
  add_message_type<std::vector<decode_item>>("std::vector<decode_item>");
  add_message_type<shard_call>("shard_call");
  add_message_type<std::vector<shard_call>>("std::vector<shard_call>");
  add_message_type<attention_reply>("attention_reply");
  add_message_type<std::vector<attention_reply>>("std::vector<attention_reply>");
  add_message_type<mesh_plan>("mesh_plan");
  add_message_type<spawn_order>("spawn_order");
  add_message_type<spawned_node>("spawned_node");
  add_message_type<cluster_status>("cluster_status");
  add_message_type<expert_weights>("expert_weights");
  add_message_type<std::vector<wire_tensor>>("std::vector<wire_tensor>");
  add_message_type<std::vector<std::vector<wire_tensor>>>("std::vector<std::vector<wire_tensor>>");
  add_message_type<std::vector<std::uint64_t>>("std::vector<uint64_t>");
  add_message_type<attention_query>("attention_query");
  add_message_type<wire_partial>("wire_partial");
  add_message_type<std::vector<wire_partial>>("std::vector<wire_partial>");
  add_message_type<context_spec>("context_spec");
  add_message_type<shard_actor>("shard_actor");
  add_message_type<context_actor>("context_actor");
  add_message_type<std::vector<std::uint32_t>>("std::vector<uint32_t>");
  add_message_type<std::vector<std::vector<std::uint32_t>>>("std::vector<std::vector<uint32_t>>");
  add_message_type<std::vector<std::pair<std::uint32_t, std::uint32_t>>>(
    "std::vector<std::pair<uint32_t,uint32_t>>");
  add_message_type<relay_actor>("relay_actor");
  add_message_type<expert_actor>("expert_actor");
  add_message_type<composer_actor>("composer_actor");
  add_message_type<coordinator_actor>("coordinator_actor");
  add_message_type<node_agent_actor>("node_agent_actor");
  add_error_category(mesh_category, render_mesh_error);
  load<caf::io::middleman>();
  // No automatic node-to-node connections: CAF 0.17 opens them lazily, when a node first
  // addresses an actor of a node it only knows through the head, and messages sent while one
  // is being set up were lost now and then (the first request of a fresh 3-node cluster hung
  // on top-k score shares between two non-head nodes, 2 runs in 10). Messages between non-head
  // nodes go through the head instead: scores, plans and records are small, and tensors take
  // the data plane's direct connections anyway.
  set("middleman.enable-automatic-connections", false);
  scheduler(scheduler_policy::sharing);
  worker_threads(0);
}

mesh_config& mesh_config::scheduler(scheduler_policy p) {
  set("scheduler.policy",
      p == scheduler_policy::sharing ? caf::atom("sharing") : caf::atom("stealing"));
  return *this;
}

mesh_config& mesh_config::worker_threads(size_t n) {
  set("scheduler.max-threads", n > 0 ? n : std::max<size_t>(std::thread::hardware_concurrency(), 2));
  return *this;
}

mesh_config& mesh_config::middleman_workers(size_t n) {
  if (n > 0)
    set("middleman.workers", n);
  return *this;
}

} // namespace eoe::actors
