// The trace collector against what a peer may send: lines that are not JSON objects, not
// UTF-8 (0xFF, overlong forms, encoded surrogates), escapes of lone surrogates, NUL bytes,
// empty lines; a line with no newline past the line limit; a connection that ends inside a
// line; a first line that is no role. Each bad line is dropped with a log line naming the
// peer, the line and the byte or the parser's reason; the followers get exactly the good
// lines; the collector and its other connections go on. And the other end: a sink whose
// collector stops reading loses lines of the stream, never its files or its flush.

#include "net/trace_collector.hpp"
#include "net/trace_sink.hpp"
#include "eventually.hpp"
#include "log_lines.hpp"
#include "raw_socket.hpp"
#include "scratch_dir.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace eoe;

namespace {

using raw_client = test::raw_socket;

using test::eventually;

/// A follower that is known to be registered: the publisher sends probe lines until one
/// arrives (the collector takes the two connections in no set order).
struct registered_follower {
  raw_client follower, publisher;
  std::uint64_t probes = 0;

  explicit registered_follower(std::uint16_t port) : follower(port), publisher(port) {
    REQUIRE(follower.send("follow\n"));
    REQUIRE(publisher.send("publish\n"));
    const std::string probe = R"({"probe":true})";
    std::thread feeder;
    std::atomic<bool> seen{false};
    feeder = std::thread([&] {
      while (!seen && probes < 1000) {
        ++probes;
        if (!publisher.send(probe + "\n"))
          return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
    const auto first = follower.line();
    seen = true;
    feeder.join();
    REQUIRE(first == probe);
    // The probes after the first are in flight: the next good line marks their end.
    const std::string mark = R"({"mark":true})";
    REQUIRE(publisher.send(mark + "\n"));
    for (auto l = follower.line(); l != mark; l = follower.line()) {
      REQUIRE(l.has_value());
      REQUIRE(*l == probe);
    }
    ++probes; // the mark, a good line too
  }
};

} // namespace

TEST_CASE("lines that are not trace lines are dropped by name; followers get exactly the "
          "good ones",
          "[trace_collector]") {
  std::ostringstream log; // read once the collector is gone: its thread writes it
  std::string publisher_name;
  std::vector<std::string> got;
  std::uint64_t lines = 0, rejected = 0, probes = 0;
  const std::string good1 = R"({"trace":1,"req":2,"kind":"send","name":"contrib"})";
  const std::string good2 = R"({"trace":1,"text":"caf\u00e9 \ud83d\ude00 ok"})";
  const std::string good3 = R"(  {"last":true}  )";
  {
    net::trace_collector collector{"127.0.0.1", 0, {}, log};
    registered_follower f{collector.port()};
    probes = f.probes;
    publisher_name = f.publisher.name();
    std::string batch;
    for (const std::string& l : {
           good1,
           std::string{"not json at all"},
           std::string{"\xFF\xFE{}"},
           std::string{"{\"a\":\"\xC0\xAF\"}"},
           std::string{"{\"a\":\"\xED\xA0\x80\"}"},
           std::string{R"({"a":"\ud800"})"},
           std::string{"{\"a\":1}\0", 8},
           std::string{"{\"a\":\"x\0y\"}", 11},
           good2,
           std::string{"[1,2]"},
           std::string{},
           good3,
         })
      batch += l + "\n";
    REQUIRE(f.publisher.send(batch));
    for (auto l = f.follower.line(); l; l = f.follower.line()) {
      got.push_back(*l);
      if (*l == good3)
        break;
    }
    REQUIRE(eventually([&] { return collector.rejected() == 9; }));
    lines = collector.lines();
    rejected = collector.rejected();
  }
  CHECK(got == std::vector<std::string>{good1, good2, good3});
  CHECK(lines == probes + 3);
  CHECK(rejected == 9);
  // Lines count from the publisher's first line after its role (the probes and the mark).
  const auto n = [&](std::uint64_t k) { return "line " + std::to_string(probes + k); };
  const auto from = "trace collector: from publisher " + publisher_name + ": ";
  const auto parse_error = [&](std::uint64_t k, std::uint64_t column, const std::string& why) {
    return from + n(k) + " is not JSON: parse error at line 1, "
           + "column " + std::to_string(column) + ": syntax error while parsing value - " + why
           + "; line dropped";
  };
  const std::vector<std::string> want{
    parse_error(2, 2, "invalid literal; last read: 'no'"),
    from + n(3) + " byte 1: 0xFF is not UTF-8 (never appears in UTF-8); line dropped",
    from + n(4) + " byte 7: 0xC0 is not UTF-8 (an overlong form (never appears in UTF-8)); "
                  "line dropped",
    from + n(5) + " byte 7: 0xED is not UTF-8 (a UTF-16 surrogate (U+D800..U+DFFF)); line "
                  "dropped",
    parse_error(6, 13, "invalid string: surrogate U+D800..U+DBFF must be followed by "
                       "U+DC00..U+DFFF; last read: '\"\\ud800\"'"),
    // nlohmann alone would take this one: it reads a NUL as the end of its input.
    from + n(7) + " byte 8: a NUL byte (0x00), which no trace line holds; line dropped",
    from + n(8) + " byte 8: a NUL byte (0x00), which no trace line holds; line dropped",
    from + n(10) + " is JSON but not an object; line dropped",
    parse_error(11, 1, "unexpected end of input; expected '[', '{', or a literal"),
  };
  test::check_lines_once("collector log", log.str(), want);
}

TEST_CASE("a line past the limit, a line cut off and a first line that is no role cost only "
          "their own connection",
          "[trace_collector]") {
  std::ostringstream log;
  std::vector<std::string> want;
  std::uint64_t rejected = 0;
  const std::string limit = std::to_string(std::size_t{1} << 20);
  {
    net::trace_collector collector{"127.0.0.1", 0, {}, log};
    registered_follower f{collector.port()};
    const auto probes = f.probes;
    // A publisher that never ends its line: closed at 1 MiB, while the others go on.
    {
      raw_client p{collector.port()};
      std::string endless = "publish\n{\"a\":\"";
      endless.resize(endless.size() + (std::size_t{3} << 20), 'x');
      (void) p.send(endless); // false once the collector has closed it: what it sent is enough
      CHECK(p.wait_closed());
      want.push_back("trace collector: from publisher " + p.name() + ": line 1 has no newline in "
                     + limit + " bytes (the line limit); connection closed");
    }
    // A publisher that leaves inside a line: that line is dropped, the one before is not.
    {
      raw_client p{collector.port()};
      REQUIRE(p.send("publish\n{\"whole\":1}\n{\"cut\":"));
      p.finish();
      CHECK(p.wait_closed());
      want.push_back("trace collector: from publisher " + p.name()
                     + ": the connection ended inside line 2 (7 bytes without a newline); line "
                       "dropped");
    }
    CHECK(f.follower.line() == R"({"whole":1})");
    // A first line that is no role, with bytes a log must not print raw.
    {
      raw_client p{collector.port()};
      REQUIRE(p.send(std::string{"\xFFhello\x01\x00\x1B[2J\n", 13}));
      CHECK(p.line() == "error: the first line must be \"publish\" or \"follow\"");
      CHECK(p.wait_closed());
      want.push_back("trace collector: from " + p.name()
                     + ": the first line is \"\\xFFhello\\x01\\x00\\x1B[2J\", not \"publish\" or "
                       "\"follow\"; connection closed");
    }
    // A first line with no newline at all.
    {
      raw_client p{collector.port()};
      (void) p.send(std::string(std::size_t{3} << 20, 'p')); // (as above)
      CHECK(p.wait_closed());
      want.push_back("trace collector: from " + p.name() + ": no newline in the first " + limit
                     + " bytes (the line limit); connection closed");
    }
    // The first publisher and the follower were not touched; a new publisher is served too.
    REQUIRE(f.publisher.send("{\"after\":1}\n"));
    CHECK(f.follower.line() == R"({"after":1})");
    raw_client late{collector.port()};
    REQUIRE(late.send("publish\n{\"late\":1}\n"));
    CHECK(f.follower.line() == R"({"late":1})");
    CHECK(collector.lines() == probes + 3);
    rejected = collector.rejected();
  }
  CHECK(rejected == 2);
  test::check_lines_once("collector log", log.str(), want);
}

TEST_CASE("a collector that stops reading costs the sink lines of its stream, never the files "
          "or flush",
          "[trace_collector]") {
  // A "collector" whose connections the kernel completes and nobody reads: the sink's writes
  // stop once the socket buffers are full.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listener >= 0);
  const int small = 4096;
  ::setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  socklen_t len = sizeof at;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&at), &len);
  const auto dir = std::filesystem::temp_directory_path()
                   / ("eoe_test_trace_collector_" + std::to_string(::getpid()));
  const test::scratch_dir scratch{dir}; // however the case ends
  constexpr int events = 100'000; // about 15 MB: more than any socket buffer takes
  std::uint64_t dropped = 0;
  {
    net::file_trace_sink sink{dir, "127.0.0.1:" + std::to_string(ntohs(at.sin_port))};
    for (int i = 0; i < events; ++i) {
      actors::trace_event e;
      e.trace = 1;
      e.request = static_cast<std::uint64_t>(i);
      e.kind = actors::trace_kind::compute;
      e.name = "ffn-with-a-name-long-enough-to-fill-buffers-soon";
      e.node = "n1";
      e.actor = "expert 0.1";
      e.t_ns = 1'700'000'000'000'000'000 + i;
      sink.record(std::move(e));
    }
    auto flushed = std::async(std::launch::async, [&] { sink.flush(); });
    // Each stalled write is given up after 5 s (a batch or two: well within the bound).
    REQUIRE(flushed.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    dropped = sink.stream_dropped();
  }
  ::close(listener);
  std::ifstream in{dir / "n1.trace.jsonl"};
  int lines = 0;
  for (std::string l; std::getline(in, l);)
    ++lines;
  CHECK(lines == events);
  CHECK(dropped > 0);
}
