// experts/utf8 against Unicode's table 3-7 of well-formed byte sequences, case by case: where the
// first fault is and why, what the escaped text is, and that every escaped text is accepted by
// nlohmann's dump (which throws on a string that is not UTF-8).
#include "experts/base/utf8.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <stdexcept>

using namespace eoe::experts;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b)
    s += static_cast<char>(c);
  return s;
}

} // namespace

TEST_CASE("well-formed UTF-8 is accepted whole", "[utf8]") {
  for (const std::string& ok : {std::string(""), std::string("plain ASCII"), bytes({0x00, 0x7F}),
                               bytes({0xC2, 0x80}), bytes({0xDF, 0xBF}),             // U+0080, U+07FF
                               bytes({0xE0, 0xA0, 0x80}), bytes({0xED, 0x9F, 0xBF}), // U+0800, U+D7FF
                               bytes({0xEE, 0x80, 0x80}), bytes({0xEF, 0xBF, 0xBF}), // U+E000, U+FFFF
                               bytes({0xF0, 0x90, 0x80, 0x80}),                      // U+10000
                               bytes({0xF4, 0x8F, 0xBF, 0xBF}),                      // U+10FFFF
                               std::string("gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80")}) {
    INFO(escape_invalid_utf8(ok));
    CHECK_FALSE(find_invalid_utf8(ok).has_value());
    CHECK(escape_invalid_utf8(ok) == ok);
    CHECK_NOTHROW(require_utf8("text", ok));
  }
}

TEST_CASE("each kind of ill-formed sequence: where and why", "[utf8]") {
  struct bad_case {
    std::string text;
    std::size_t offset;
    int byte;
    std::string why;
    std::string escaped;
  };
  const std::vector<bad_case> cases{
    {bytes({'a', 0xFF}), 1, 0xFF, "never appears in UTF-8", "a\\xFF"},
    {bytes({0xFE, 0xFF, '{'}), 0, 0xFE, "never appears in UTF-8", "\\xFE\\xFF{"},
    {bytes({'x', 0x80}), 1, 0x80, "a continuation byte without a lead byte", "x\\x80"},
    {bytes({0xC0, 0xAF}), 0, 0xC0, "an overlong form (never appears in UTF-8)", "\\xC0\\xAF"},  // '/'
    {bytes({0xC1, 0xBF}), 0, 0xC1, "an overlong form (never appears in UTF-8)", "\\xC1\\xBF"},
    {bytes({0xE0, 0x80, 0xAF}), 0, 0xE0, "an overlong form", "\\xE0\\x80\\xAF"},
    {bytes({0xF0, 0x80, 0x80, 0xAF}), 0, 0xF0, "an overlong form", "\\xF0\\x80\\x80\\xAF"},
    {bytes({'a', 0xED, 0xA0, 0x80}), 1, 0xED, "a UTF-16 surrogate (U+D800..U+DFFF)", "a\\xED\\xA0\\x80"},
    {bytes({0xF4, 0x90, 0x80, 0x80}), 0, 0xF4, "past U+10FFFF", "\\xF4\\x90\\x80\\x80"},
    {bytes({0xF5, 0x80, 0x80, 0x80}), 0, 0xF5, "never appears in UTF-8", "\\xF5\\x80\\x80\\x80"},
    {bytes({0xE2, 0x82}), 0, 0xE2, "begins a multi-byte sequence that the text ends inside", "\\xE2\\x82"},
    {bytes({0xE2, 0x82, 'A'}), 0, 0xE2, "begins a multi-byte sequence that breaks off", "\\xE2\\x82A"},
    {bytes({0xC3, 0xBC, 0xC3}), 2, 0xC3, "begins a multi-byte sequence that the text ends inside",
     bytes({0xC3, 0xBC}) + "\\xC3"},
  };
  for (auto& c : cases) {
    INFO(c.escaped);
    const auto f = find_invalid_utf8(c.text);
    REQUIRE(f.has_value());
    CHECK(f->offset == c.offset);
    CHECK(int(f->byte) == c.byte);
    CHECK(std::string(f->why) == c.why);
    CHECK(escape_invalid_utf8(c.text) == c.escaped);
    CHECK_FALSE(find_invalid_utf8(escape_invalid_utf8(c.text)).has_value());
    // After any count of ASCII bytes (read eight at a time).
    for (std::size_t pad = 1; pad <= 17; ++pad) {
      const auto g = find_invalid_utf8(std::string(pad, 'q') + c.text);
      REQUIRE(g.has_value());
      CHECK(g->offset == pad + c.offset);
      CHECK(std::string(g->why) == c.why);
    }
  }
}

TEST_CASE("the message names the byte counting from 1, as the issue's user reads it", "[utf8]") {
  const std::string body = R"({"tokens": [[1]], "k)" + bytes({0xFF}) + R"(": 1})";
  try {
    require_utf8("body", body);
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) == "body byte 21: 0xFF is not UTF-8 (never appears in UTF-8)");
  }
}

TEST_CASE("quote_input cuts long text, says its length, and never splits a character", "[utf8]") {
  CHECK(quote_input("short") == "short");
  CHECK(quote_input(std::string(1000, 'a'), 8) == "aaaaaaaa... (1000 bytes)");
  // A 2-byte character across the cut is left out whole rather than halved.
  const std::string s = "abcdefg" + bytes({0xC3, 0xBC}) + std::string(100, 'z');
  const auto q = quote_input(s, 8);
  CHECK(q == "abcdefg... (109 bytes)");
  CHECK_FALSE(find_invalid_utf8(q).has_value());
  CHECK(quote_input(bytes({0xFF, 0xFF}), 8) == "\\xFF\\xFF");
}

TEST_CASE("any bytes, escaped, go into JSON without an exception", "[utf8]") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40);
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    for (int n = len(rng); n > 0; --n)
      s += static_cast<char>(byte(rng));
    const auto e = escape_invalid_utf8(s);
    REQUIRE_FALSE(find_invalid_utf8(e).has_value());
    // nlohmann's own check agrees with ours: the escaped text dumps, the raw one dumps exactly
    // when we call it well-formed.
    REQUIRE_NOTHROW(nlohmann::json(e).dump());
    bool threw = false;
    try {
      (void) nlohmann::json(s).dump();
    } catch (const nlohmann::json::type_error&) {
      threw = true;
    }
    REQUIRE(threw == find_invalid_utf8(s).has_value());
  }
}

TEST_CASE("loggable escapes control characters too, so a name cannot break a log line", "[utf8]") {
  CHECK(loggable("n2") == "n2");
  CHECK(loggable(bytes({'n', 0xFF, '\n', 0x01, 0x7F})) == "n\\xFF\\x0A\\x01\\x7F");
  CHECK(loggable(std::string(100, 'a'), 4) == "aaaa... (100 bytes)");
}
