// build/bin/eoe-trace: what the mesh's trace files say.
//   eoe-trace summary  [--trace ID] PATH...      edges, activation, critical path
//   eoe-trace perfetto [--trace ID] -o trace.json PATH...
//   eoe-trace html     [--trace ID] -o flows.html PATH...
//   eoe-trace follow HOST:PORT [--count N]     live events from the cluster's collector
//   eoe-trace follow --cluster FILE [--count N]  (its [trace] collector, over its [tls])
// PATH: trace files or folders of them (<node>.trace.jsonl, as the nodes' [trace] dir holds).

#include "net/cluster_config.hpp"
#include "experts/base/utf8.hpp"
#include "flows_page.hpp"
#include "follow.hpp"
#include "perfetto_json.hpp"
#include "trace_summary.hpp"

#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>

namespace {

using namespace eoe::trace_tool;

struct options {
  std::vector<std::string> paths;
  std::uint64_t trace = 0;
  std::string out;
};

trace_log load(const options& o) {
  std::vector<std::filesystem::path> paths(o.paths.begin(), o.paths.end());
  return load_trace(paths);
}

template <class Fn>
void write_to(const std::string& path, Fn&& fn) {
  std::ofstream f{path, std::ios::binary};
  if (!f)
    throw std::runtime_error(path + ": cannot write");
  fn(f);
  f.close();
  if (!f)
    throw std::runtime_error(path + ": write failed");
}

void add_inputs(CLI::App* cmd, options& o) {
  cmd->add_option("paths", o.paths, "trace files or folders of *.trace.jsonl")->required();
  cmd->add_option("--trace", o.trace, "the trace (request) to draw or follow the path of");
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"eoe-trace: the messages of an eoe mesh, as data, as a timeline and as a page"};
  app.require_subcommand(1);
  options o;
  auto* summary = app.add_subcommand("summary", "per edge counts, bytes and latency; expert "
                                                "activation; the critical path of a request");
  add_inputs(summary, o);
  auto* perfetto = app.add_subcommand("perfetto", "Trace Event JSON for ui.perfetto.dev and "
                                                  "chrome://tracing");
  add_inputs(perfetto, o);
  perfetto->add_option("-o,--out", o.out, "the JSON file to write")->required();
  auto* html = app.add_subcommand("html", "one self-contained HTML page: sequence chart, layer "
                                          "graph, activation heatmap");
  add_inputs(html, o);
  html->add_option("-o,--out", o.out, "the HTML file to write")->required();
  std::string address;
  std::uint64_t count = 0;
  auto* follow_cmd = app.add_subcommand("follow", "live events of a running cluster, one line each");
  std::string cluster;
  follow_cmd->add_option("address", address,
                         "HOST:PORT of the cluster's trace collector (default: the cluster "
                         "file's [trace] collector)");
  follow_cmd->add_option("--cluster", cluster,
                         "a cluster file: its [trace] collector, over TLS when it has [tls]")
    ->check(CLI::ExistingFile);
  follow_cmd->add_option("--count", count, "stop after this many events (0: never)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (summary->parsed()) {
      print_summary(std::cout, load(o), o.trace);
    } else if (perfetto->parsed()) {
      const auto log = load(o);
      write_to(o.out, [&](std::ostream& f) { write_perfetto(f, only_trace(log, o.trace)); });
      std::cout << "wrote " << o.out << " (" << log.events.size()
                << " events; open it in ui.perfetto.dev or chrome://tracing)\n";
    } else if (html->parsed()) {
      const auto log = load(o);
      write_to(o.out, [&](std::ostream& f) { write_flows_page(f, log, o.trace); });
      std::cout << "wrote " << o.out << "\n";
    } else if (follow_cmd->parsed()) {
      eoe::net::tls_settings tls;
      if (!cluster.empty()) {
        auto c = eoe::net::load_cluster_config(cluster);
        if (!c)
          throw std::runtime_error(c.error().message);
        tls = c->tls;
        if (address.empty())
          address = c->trace.collector;
        if (address.empty())
          throw std::runtime_error(cluster + " has no [trace] collector; give HOST:PORT");
      }
      if (address.empty())
        throw std::runtime_error("follow: give HOST:PORT or --cluster FILE");
      follow(address, std::cout, count, tls);
    }
  } catch (const std::exception& e) {
    // what() may quote a path or a name: any bytes.
    std::cerr << "eoe-trace: " << eoe::experts::escape_invalid_utf8(e.what()) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "eoe-trace: internal error (an exception that is not a std::exception)\n";
    return 2;
  }
  return 0;
}
