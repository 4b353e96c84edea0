#pragma once
// Trace files read back: the events of every file given (or every *.trace.jsonl in a folder
// given), and the messages they describe, each send matched with its receive.

#include "actors/trace.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace eoe::trace_tool {

using actors::trace_event;
using actors::trace_kind;

struct trace_log {
  std::vector<trace_event> events; ///< ordered by time
};

/// Reads files and folders (a folder: every *.trace.jsonl in it). Throws std::runtime_error
/// naming the file, the line and the field at fault; an empty line is skipped.
trace_log load_trace(const std::vector<std::filesystem::path>& paths);

/// Parses JSON lines from text (source names them in errors).
void parse_into(trace_log& log, std::string_view text, const std::string& source);

/// Keeps the events of one trace (0: every trace).
trace_log only_trace(const trace_log& log, std::uint64_t trace);

/// One message: the send and the receive (indices into events), and the wire time.
struct message {
  size_t send = 0;
  size_t receive = 0;
  std::int64_t latency_ns = 0;
};

struct message_match {
  std::vector<message> messages;
  std::vector<size_t> unmatched_sends;    ///< sends no receive answers
  std::vector<size_t> unmatched_receives; ///< receives of no recorded send
};

/// Matches sends and receives: the send at (trace, msg, hop) to peer P with the receive at
/// (trace, msg, hop) recorded by P.
message_match match_messages(const trace_log& log);

/// The traces in the log, in order of first appearance: (trace id, request id).
std::vector<std::pair<std::uint64_t, std::uint64_t>> traces_of(const trace_log& log);

} // namespace eoe::trace_tool
