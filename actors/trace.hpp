#pragma once
// Tracing of the mesh: every send, receive, compute, activate, abstain and merge of a traced
// request becomes a trace_event. Off by default; a request is traced when the client flags it
// or the coordinator samples it, and then carries a nonzero trace id on every message.
//
// Events go to the process's sink (net/trace_sink writes a file per node and can stream to a
// collector); timestamps are the system clock of the recording node minus that node's clock
// offset to the head, measured when the node joins, so that every node's events share one
// time line. A message is named by an id its sender draws and the hop it is on (0 from the
// sender, 1 from a relay on to a local member): the send at (msg, hop) to peer P and P's receive
// at (msg, hop) are the two ends of one arrow.

#include <atomic>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace eoe::actors {

enum class trace_kind : std::uint8_t { send, receive, compute, activate, abstain, merge };

std::string_view to_string(trace_kind k) noexcept;
std::optional<trace_kind> trace_kind_from(std::string_view s) noexcept;

struct trace_event {
  std::uint64_t trace = 0;   ///< the trace id of the request
  std::uint64_t request = 0;
  trace_kind kind = trace_kind::send;
  std::string name;          ///< message kind (contrib, scores, record, infer, result) or step
  std::string node;          ///< where it was recorded
  std::string actor;         ///< who recorded it: "expert 1.3", "relay n2", "composer", ...
  std::string peer;          ///< the other end of a send or receive
  std::uint64_t msg = 0;     ///< message id (sends and receives)
  std::uint8_t hop = 0;
  std::uint64_t bytes = 0;   ///< payload bytes of a message
  std::int32_t layer = -1;   ///< unrolled layer, where there is one
  std::int32_t expert = -1;  ///< stable expert id, where there is one
  float score = std::nanf(""); ///< activate / abstain: the expert's mean self-score
  std::uint32_t rows = 0;    ///< activate: tokens taken; compute: tokens computed
  std::int64_t t_ns = 0;     ///< start, ns since the Unix epoch on the head's clock
  std::int64_t dur_ns = 0;

  bool operator==(const trace_event&) const = default;
};

/// One JSON object on one line (no newline), always valid UTF-8: a name's bytes that are not
/// are written as U+FFFD.
std::string to_json_line(const trace_event& e);

/// Parses one line; throws std::invalid_argument naming the field at fault ("field \"hop\" is
/// out of range: 300"), or the byte where the line is not JSON (a NUL byte among them: nlohmann
/// would end the text there). Values are checked as they are stored: times and durations within
/// 4e18 ns (so that differences fit an int64), layer and expert not negative, a score within a
/// float's range. What an error quotes of the line is ASCII and at most about 100 characters.
trace_event parse_trace_line(std::string_view line);

/// Where events go. Implementations are called from many actors' threads at once.
class trace_sink {
public:
  virtual ~trace_sink() = default;
  /// e.t_ns is the local system clock; the sink aligns it to the head's
  /// (tracing::clock_offset of e.node).
  virtual void record(trace_event e) = 0;
};

namespace tracing {

/// Installs the process's sink (nullptr: none; traced requests then record nothing here).
void install(std::shared_ptr<trace_sink> sink);
std::shared_ptr<trace_sink> sink();

/// A node's clock minus the head's, in ns, as measured when the node joined (0 until then).
void set_clock_offset(const std::string& node, std::int64_t offset_ns);
std::int64_t clock_offset(std::string_view node);

/// The local system clock in ns since the Unix epoch (plus a test skew, EOE_CLOCK_SKEW_MS).
std::int64_t now_ns();

/// A process-unique message id (never 0).
std::uint64_t next_message_id();

/// Whether request `request` is in the sampled fraction (a hash of the id, so repeatable).
bool sampled(std::uint64_t request, double fraction) noexcept;

/// The offset of a remote clock from ours, from round trips: each sample is (t0 sent, t1 the
/// remote's time, t2 received); the one with the shortest round trip wins,
/// offset = t1 - (t0 + t2) / 2.
struct clock_sample {
  std::int64_t t0 = 0, t1 = 0, t2 = 0;
};
std::int64_t estimate_offset(const clock_sample* samples, size_t n);

} // namespace tracing

/// What every event of one actor on one request shares; records nothing when the request is
/// not traced or no sink is installed.
struct trace_scope {
  std::uint64_t trace = 0;
  std::uint64_t request = 0;
  std::string node;
  std::string actor;
  std::shared_ptr<trace_sink> sink;

  trace_scope(std::uint64_t trace_id, std::uint64_t request_id, std::string_view node_name,
              std::string_view actor_name)
    : trace(trace_id), request(request_id) {
    if (trace != 0) {
      sink = tracing::sink();
      if (sink) {
        node = node_name;
        actor = actor_name;
      }
    }
  }

  explicit operator bool() const noexcept {
    return sink != nullptr;
  }

  /// A send (at `t`, lasting `dur`) or a receive of message `msg` at `hop`.
  void message(trace_kind kind, std::string_view name, std::string_view peer, std::uint64_t msg,
               std::uint8_t hop, std::uint64_t bytes, std::int32_t layer, std::int32_t expert,
               std::int64_t t, std::int64_t dur = 0) const;
  /// A step of work from t0 to t1 (compute, merge), or an activate / abstain decision.
  void step(trace_kind kind, std::string_view name, std::int32_t layer, std::int32_t expert,
            std::int64_t t0, std::int64_t t1, std::uint32_t rows = 0,
            float score = std::nanf("")) const;

private:
  /// What every event of this scope carries.
  trace_event event(trace_kind kind, std::string_view name, std::int32_t layer,
                    std::int32_t expert) const;
};

} // namespace eoe::actors
