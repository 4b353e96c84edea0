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

/// Parses JSON lines from text (source names them in errors). Throws std::runtime_error
/// "SOURCE:LINE: ..." at the first bad line: bytes that are not UTF-8 ("line byte 17: 0xFF is
/// not UTF-8 (...)"), text that is not JSON (the byte), a field missing, mistyped or out of
/// range; what it says of the line's text is escaped and cut short.
void parse_into(trace_log& log, std::string_view text, const std::string& source);

/// One line (no newline) as an event; throws std::invalid_argument as parse_into says.
actors::trace_event parse_line(std::string_view line);

/// A name read from a trace, fit for a terminal or a fixed-width column: bytes that are not
/// UTF-8 and control characters written as \xNN, and past max_bytes cut with the length said.
std::string printable(std::string_view s, size_t max_bytes = 48);

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
