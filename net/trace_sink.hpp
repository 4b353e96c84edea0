#pragma once
// The trace sink of a node process: events of traced requests go, one JSON line each, to
// <dir>/<node>.trace.jsonl (a file per node; an in-process cluster writes one per node too)
// and, when a collector is configured, over TCP to it. Recording only appends to a buffer
// under a lock; a writer thread moves the buffer to the file and the socket every 50 ms, so
// actors never wait on the disk or the network. A collector that is down or slow costs lines
// of the live stream (counted), never the files. With TLS credentials the stream is TLS.

#include "actors/trace.hpp"
#include "net/tls_settings.hpp"

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace eoe::net {

class file_trace_sink : public actors::trace_sink {
public:
  /// dir "" writes no files; collector "" streams nowhere; `tls` off: a plaintext stream.
  /// Throws std::runtime_error when dir cannot be created (or the TLS files do not load).
  file_trace_sink(std::filesystem::path dir, std::string collector,
                  const tls_settings& tls = {});
  ~file_trace_sink() override;

  void record(actors::trace_event e) override;

  /// Writes everything recorded so far to the files (and the stream) before it returns.
  void flush();

  /// Lines the live stream could not take (no collector reachable).
  std::uint64_t stream_dropped() const;

  /// The file a node's events go to.
  std::filesystem::path file_of(const std::string& node) const;

private:
  void run();
  void write_out(std::vector<std::pair<std::string, std::string>>& batch);

  std::filesystem::path dir_;
  std::string collector_;
  mutable std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::pair<std::string, std::string>> pending_; ///< (node, line)
  std::uint64_t recorded_ = 0, written_ = 0, dropped_ = 0;
  bool stop_ = false;
  bool flush_ = false;
  std::map<std::string, std::ofstream> files_; ///< writer thread only
  struct stream;
  std::unique_ptr<stream> stream_;             ///< writer thread only
  std::thread writer_;
};

} // namespace eoe::net
