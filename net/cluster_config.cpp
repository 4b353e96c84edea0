#include "net/cluster_config.hpp"

#include "net/etcd_client.hpp"

#include "experts/base/toml_reader.hpp"
#include "experts/base/utf8.hpp"
#include "net/tls_context.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <fstream>
#include <set>
#include <sstream>

namespace eoe::net {

using experts::errc;
using experts::fail;
using experts::problems;
using experts::table_reader;

size_t cluster_config::head_index() const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == head)
      return i;
  return 0;
}

std::string cluster_config::head_addresses() const {
  if (heads.empty())
    return nodes.empty() ? std::string{} : nodes[head_index()].address();
  std::string out;
  for (auto& h : heads)
    if (auto* n = find(h))
      out += (out.empty() ? "" : ",") + n->address();
  return out;
}


const node_entry* cluster_config::find(std::string_view node) const {
  for (auto& n : nodes)
    if (n.name == node)
      return &n;
  return nullptr;
}

std::string_view default_cluster_text() noexcept {
  return R"(# The embedded default cluster: three nodes on loopback running the embedded default model.
[cluster]
name = "default"
head = "n1"

[[node]]
name = "n1"
port = 4401

[[node]]
name = "n2"
port = 4402

[[node]]
name = "n3"
port = 4403
)";
}

namespace {

/// A node's name becomes <dir>/<name>.trace.jsonl and travels in every message and trace
/// line: no path separators, no ".." , no control characters or spaces.
bool node_name_ok(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.')
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
           || c == '_' || c == '-';
  });
}

/// What `eoe up` puts on an ssh command line (a node's ssh target, the remote eoe binary):
/// nothing a remote shell would read as more than one word.
bool shell_word_ok(std::string_view s) {
  return !s.empty() && s.size() <= 256 && s.front() != '-'
         && std::all_of(s.begin(), s.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                     || c == '.' || c == '_' || c == '-' || c == '@' || c == ':' || c == '/'
                     || c == '+';
            });
}

} // namespace

experts::expected<cluster_config> parse_cluster_config(std::string_view text,
                                                       std::string_view source) {
  auto parsed = experts::parse_toml(text, source);
  if (!parsed)
    return eoe::unexpected(parsed.error());
  const toml::table& doc = *parsed;
  problems out{source, {}};
  table_reader top{doc, "", out};
  cluster_config c;
  std::optional<std::int64_t> heartbeat; // [cluster] heartbeat_ms, when given
  toml::source_region registry_at, heads_at;
  toml::source_region heartbeat_at;
  if (auto* n = top.take("cluster")) {
    if (auto t = n->as_table()) {
      table_reader r{*t, "cluster", out};
      c.name = r.string("name", c.name).value_or(c.name);
      c.checkpoint = r.string("checkpoint", std::string{}).value_or("");
      c.head = r.string("head", std::string{}).value_or("");
      c.deadline_ms = static_cast<std::uint32_t>(
        r.integer("deadline_ms", 1, 3'600'000, 5000).value_or(5000));
      c.secret = r.string("secret", std::string{}).value_or("");
      c.state_dir = r.string("state_dir", std::string{}).value_or("");
      c.ssh_command = r.string("ssh_command", c.ssh_command).value_or(c.ssh_command);
      c.remote_eoe = r.string("remote_eoe", c.remote_eoe).value_or(c.remote_eoe);
      if (!shell_word_ok(c.remote_eoe))
        out.add(t->get("remote_eoe")->source(), "cluster.remote_eoe",
                "expected a path of letters, digits and '/._-+', got \""
                  + experts::loggable(c.remote_eoe) + "\"");
      c.registry = r.string("registry", std::string{}).value_or("");
      if (!c.registry.empty()) {
        registry_at = t->get("registry")->source();
        if (auto parsed = etcd_client::parse(c.registry); !parsed)
          out.add(registry_at, "cluster.registry", "expected \"etcd://HOST:PORT\", got \""
                                                     + experts::loggable(c.registry) + "\"");
      }
      if (auto* h = r.take("heads")) {
        heads_at = h->source();
        auto arr = h->as_array();
        if (!arr || arr->empty()) {
          r.bad(*h, "heads", "an array of node names");
        } else {
          for (size_t i = 0; i < arr->size(); ++i) {
            auto name = (*arr)[i].as_string();
            if (!name)
              r.bad((*arr)[i], "heads[" + std::to_string(i) + "]", "a node name");
            else
              c.heads.push_back(name->get());
          }
        }
      }
      c.middleman_workers = static_cast<std::uint32_t>(
        r.integer("middleman_workers", 0, 256, 0, " (0: CAF's default)").value_or(0));
      c.worker_threads = static_cast<std::uint32_t>(
        r.integer("worker_threads", 0, 256, 0, " (0: the machine's hardware threads)").value_or(0));
      c.kv_shard_positions = static_cast<std::uint64_t>(
        r.integer("kv_shard_positions", 1, std::int64_t{1} << 32, 4096).value_or(4096));
      c.kv_block_size = static_cast<std::uint32_t>(
        r.integer("kv_block_size", 1, 65536, 64).value_or(64));
      if (auto placement = r.choice("kv_placement", {"head", "spread"}, std::string{"head"}))
        c.kv_placement =
          *placement == "spread" ? actors::shard_placement::spread : actors::shard_placement::head;
      c.session_idle_s = static_cast<std::uint32_t>(
        r.integer("session_idle_s", 0, 30 * 86400, 600, " (0: never)").value_or(600));
      c.max_batch_rows = static_cast<std::uint32_t>(
        r.integer("max_batch_rows", 0, 1 << 20, 4096, " (0: no batching)").value_or(4096));
      c.batches_in_flight = static_cast<std::uint32_t>(
        r.integer("batches_in_flight", 1, 64, 1).value_or(1));
      c.max_step_tokens = static_cast<std::uint32_t>(
        r.integer("max_step_tokens", 1, 1 << 20, 256).value_or(256));
      c.steps_in_flight = static_cast<std::uint32_t>(
        r.integer("steps_in_flight", 1, 64, 2).value_or(2));
      const bool heartbeat_given = t->contains("heartbeat_ms");
      const auto hb = r.integer("heartbeat_ms", 0, 60'000, 200, " (0: off)");
      if (heartbeat_given)
        heartbeat = hb.value_or(200);
      c.suspect_after_ms = static_cast<std::uint32_t>(
        r.integer("suspect_after_ms", 1, 3'600'000, 1000).value_or(1000));
      heartbeat_at = t->source();
      if (auto policy = r.string("scheduler", std::string{"sharing"})) {
        if (*policy == "stealing")
          c.scheduler = actors::scheduler_policy::stealing;
        else if (*policy != "sharing")
          out.add(t->get("scheduler")->source(), "cluster.scheduler",
                  "expected \"sharing\" or \"stealing\", got \"" + experts::loggable(*policy)
                    + "\"");
      }
      r.reject_unknown(" in [cluster]");
    } else {
      top.bad(*n, "cluster", "a table");
    }
  }
  std::set<std::string> names, addresses;
  if (auto* n = top.take("node")) {
    auto arr = n->as_array();
    if (!arr || !arr->is_array_of_tables() || arr->empty()) {
      top.bad(*n, "node", "an array of [[node]] tables");
    } else {
      for (size_t i = 0; i < arr->size(); ++i) {
        const auto& t = *(*arr)[i].as_table();
        table_reader r{t, "node[" + std::to_string(i) + "]", out};
        node_entry e;
        const auto name = r.string("name", std::nullopt);
        e.name = name.value_or("");
        e.host = r.string("host", e.host).value_or(e.host);
        e.port = static_cast<std::uint16_t>(r.integer("port", 1, 65535, std::nullopt).value_or(0));
        e.ssh = r.string("ssh", std::string{}).value_or("");
        e.unit = r.boolean("unit", false).value_or(false);
        if (e.unit && !e.ssh.empty())
          out.add(t.get("unit")->source(), r.key_path("unit"),
                  "a node started by its unit is not started over ssh too: drop ssh or unit");
        if (!e.ssh.empty() && !shell_word_ok(e.ssh))
          out.add(t.get("ssh")->source(), r.key_path("ssh"),
                  "expected [user@]host of letters, digits and '@._-:', got \""
                    + experts::loggable(e.ssh) + "\"");
        if (name && !node_name_ok(*name))
          out.add(t.get("name")->source(), r.key_path("name"),
                  "expected 1..64 letters, digits, '.', '_' or '-', not starting with '.' (it "
                  "names the node's trace file), got \"" + experts::loggable(e.name) + "\"");
        else if (!e.name.empty() && !names.insert(e.name).second)
          out.add(t.get("name")->source(), r.key_path("name"),
                  "\"" + e.name + "\" names an earlier node too");
        if (e.port != 0 && !addresses.insert(e.address()).second)
          out.add(t.get("port")->source(), r.key_path("port"),
                  e.address() + " is an earlier node's address too");
        r.reject_unknown(" in a [[node]]");
        c.nodes.push_back(std::move(e));
      }
    }
  } else {
    top.missing("node", "at least one [[node]] table with name and port");
  }
  if (auto* n = top.take("placement")) {
    if (auto t = n->as_table()) {
      table_reader r{*t, "placement", out};
      if (auto* layers = r.take("layers")) {
        auto arr = layers->as_array();
        if (!arr) {
          r.bad(*layers, "layers", "an array with one array of node names per layer");
        } else {
          for (size_t l = 0; l < arr->size(); ++l) {
            auto row = (*arr)[l].as_array();
            std::vector<std::string> nodes;
            if (!row) {
              r.bad((*arr)[l], "layers[" + std::to_string(l) + "]", "an array of node names");
            } else {
              for (size_t e = 0; e < row->size(); ++e) {
                auto s = (*row)[e].as_string();
                if (!s || !names.contains(s->get()))
                  r.bad((*row)[e], "layers[" + std::to_string(l) + "][" + std::to_string(e) + "]",
                        "the name of a [[node]]");
                else
                  nodes.push_back(s->get());
              }
            }
            c.placement.push_back(std::move(nodes));
          }
        }
      }
      r.reject_unknown(" in [placement]");
    } else {
      top.bad(*n, "placement", "a table");
    }
  }
  if (auto* n = top.take("gateway")) {
    if (auto t = n->as_table()) {
      table_reader r{*t, "gateway", out};
      c.gateway_enabled = true;
      const auto listen = r.string("listen", std::string{"127.0.0.1:8080"}).value_or("");
      const auto colon = listen.rfind(':');
      const auto port = colon == std::string::npos ? std::string{} : listen.substr(colon + 1);
      const bool digits = !port.empty() && port.size() <= 5
                          && port.find_first_not_of("0123456789") == std::string::npos;
      if (colon == 0 || colon == std::string::npos || !digits || std::stoi(port) > 65535)
        out.add(t->get("listen") ? t->get("listen")->source() : t->source(), "gateway.listen",
                "expected host:port with a port in [0, 65535], got \""
                  + experts::loggable(listen) + "\"");
      else {
        c.gateway.host = listen.substr(0, colon);
        c.gateway.port = static_cast<std::uint16_t>(std::stoi(port));
      }
      c.gateway.admin_token = r.string("admin_token", std::string{}).value_or("");
      c.gateway.max_concurrency = static_cast<std::uint32_t>(
        r.integer("max_concurrency", 1, 100000, 64).value_or(64));
      c.gateway.max_queue = static_cast<std::uint32_t>(
        r.integer("max_queue", 0, 1000000, 256, " (0: refuse at once past max_concurrency)")
          .value_or(256));
      c.gateway.max_generate = static_cast<std::uint32_t>(
        r.integer("max_generate", 1, 1 << 20, 4096).value_or(4096));
      c.gateway.max_body_bytes = static_cast<std::uint64_t>(
        r.integer("max_body_bytes", 1024, std::int64_t{1} << 32, 16 << 20).value_or(16 << 20));
      c.gateway.max_tokens = static_cast<std::uint32_t>(
        r.integer("max_tokens", 1, 1 << 24, 65536).value_or(65536));
      c.gateway.io_threads = static_cast<std::uint32_t>(
        r.integer("io_threads", 1, 64, 2).value_or(2));
      r.reject_unknown(" in [gateway]");
    } else {
      top.bad(*n, "gateway", "a table");
    }
  }
  if (auto* n = top.take("trace")) {
    if (auto t = n->as_table()) {
      table_reader r{*t, "trace", out};
      c.trace.dir = r.string("dir", std::string{}).value_or("");
      c.trace.sample = r.number("sample", 0.0, 1.0, 0.0).value_or(0.0);
      c.trace.collector = r.string("collector", std::string{}).value_or("");
      if (!c.trace.collector.empty()) {
        const auto colon = c.trace.collector.rfind(':');
        const auto port = colon == std::string::npos ? std::string{} : c.trace.collector.substr(colon + 1);
        const bool digits = !port.empty() && port.size() <= 5
                            && port.find_first_not_of("0123456789") == std::string::npos;
        if (colon == 0 || !digits || std::stoi(port) < 1 || std::stoi(port) > 65535)
          out.add(t->get("collector")->source(), "trace.collector",
                  "expected host:port with a port in [1, 65535], got \""
                    + experts::loggable(c.trace.collector) + "\"");
      }
      r.reject_unknown(" in [trace]");
    } else {
      top.bad(*n, "trace", "a table");
    }
  }
  if (auto* n = top.take("tls")) {
    if (auto t = n->as_table()) {
      table_reader r{*t, "tls", out};
      const auto folder = std::filesystem::path{std::string{source}}.parent_path();
      const auto before = out.lines.size();
      auto file = [&](std::string_view key, const std::string& what) -> std::string {
        if (!t->contains(key)) {
          r.missing(key, what + " ([tls] takes certificate, key and ca together)");
          return {};
        }
        auto v = r.string(key, std::nullopt);
        if (!v)
          return {};
        if (v->empty()) {
          out.add(t->get(key)->source(), r.key_path(key), "expected the path of " + what + ", got \"\"");
          return {};
        }
        std::filesystem::path p{*v};
        std::error_code ec; // (absolute() throws only when the working folder is gone)
        if (p.is_relative())
          p = std::filesystem::absolute(folder / p, ec);
        return p.lexically_normal().string();
      };
      c.tls.certificate = file("certificate", "this node's PEM certificate");
      c.tls.key = file("key", "the PEM file of its private key");
      c.tls.ca = file("ca", "the PEM certificates of the cluster's CA");
      c.tls.passphrase = r.string("passphrase", std::string{}).value_or("");
      // Read here, not where the node starts: the key is opened (checked) here.
      if (const char* p = std::getenv("EOE_TLS_PASSPHRASE"))
        c.tls.passphrase = p;
      r.reject_unknown(" in [tls]");
      if (out.lines.size() == before)
        for (auto& p : check_tls(c.tls)) {
          const auto key = to_string(p.field);
          const auto* at = t->get(key);
          // (The message quotes the path as the file gives it: any characters.)
          out.add(at ? at->source() : t->source(), r.key_path(key),
                  experts::loggable(p.message, 600));
        }
    } else {
      top.bad(*n, "tls", "a table");
    }
  }
  top.reject_unknown(" at the top level");
  c.heartbeat_ms = static_cast<std::uint32_t>(heartbeat.value_or(200));
  if (c.heartbeat_ms > 0 && c.suspect_after_ms < 2 * c.heartbeat_ms)
    out.add(heartbeat_at, "cluster.suspect_after_ms",
            "must be at least twice heartbeat_ms (" + std::to_string(c.heartbeat_ms) + "), got "
              + std::to_string(c.suspect_after_ms));
  // Standby heads: nodes that take over the head through etcd's election.
  for (size_t i = 0; i < c.heads.size(); ++i)
    if (!names.contains(c.heads[i]))
      out.add(heads_at, "cluster.heads[" + std::to_string(i) + "]",
              "\"" + experts::loggable(c.heads[i]) + "\" is not the name of a [[node]]");
  if (!c.heads.empty() && c.registry.empty())
    out.add(heads_at, "cluster.heads",
            "standby heads share the registry: set [cluster] registry = \"etcd://HOST:PORT\"");
  if (!c.registry.empty() && !c.state_dir.empty())
    out.add(registry_at, "cluster.registry",
            "the registry is in etcd or in state_dir, not both: remove one");
  if (c.head.empty() && !c.heads.empty())
    c.head = c.heads.front();
  if (!c.head.empty() && !c.heads.empty()
      && std::find(c.heads.begin(), c.heads.end(), c.head) == c.heads.end())
    out.add(heads_at, "cluster.heads", "must name the head (\"" + experts::loggable(c.head) + "\")");
  if (c.head.empty() && !c.nodes.empty())
    c.head = c.nodes.front().name;
  else if (!c.head.empty() && !names.contains(c.head))
    out.add(doc.get_as<toml::table>("cluster")->get("head")->source(), "cluster.head",
            "\"" + experts::loggable(c.head) + "\" is not the name of a [[node]]");
  if (!out.lines.empty())
    return fail(errc::config_invalid, out.joined());
  c.gateway.deadline_ms = c.deadline_ms;
  return c;
}

experts::expected<cluster_config> load_cluster_config(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(errc::io, path + ": cannot open the cluster file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_cluster_config(text.str(), path);
}

} // namespace eoe::net
