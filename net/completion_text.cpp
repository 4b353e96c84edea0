#include "net/completion_text.hpp"

#include "experts/base/utf8.hpp"

#include <algorithm>

namespace eoe::net {

std::string utf8_replacing(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    if (const auto n = experts::utf8_sequence_length(bytes, i)) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD"; // U+FFFD
      ++i;
    }
  }
  return out;
}

size_t unfinished_utf8_tail(std::string_view bytes) noexcept {
  // The lead byte of the last sequence, at most 3 bytes back, followed only by continuations.
  for (size_t back = 1; back <= std::min<size_t>(3, bytes.size()); ++back) {
    const auto lead = static_cast<unsigned char>(bytes[bytes.size() - back]);
    if ((lead & 0xC0) == 0x80)
      continue; // a continuation byte: the lead is further back
    const size_t need = lead >= 0xC2 && lead <= 0xDF   ? 2
                        : lead >= 0xE0 && lead <= 0xEF ? 3
                        : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                       : 0;
    if (need <= back)
      return 0; // ASCII, a byte UTF-8 never uses, or a sequence already complete
    if (back >= 2) { // the second byte's narrower ranges (Unicode table 3-7)
      const auto second = static_cast<unsigned char>(bytes[bytes.size() - back + 1]);
      const bool ok = lead == 0xE0   ? second >= 0xA0
                      : lead == 0xED ? second <= 0x9F
                      : lead == 0xF0 ? second >= 0x90
                      : lead == 0xF4 ? second <= 0x8F
                                     : true;
      if (!ok)
        return 0;
    }
    return back;
  }
  return 0;
}

completion_text::completion_text(std::vector<std::string> stop) : stop_(std::move(stop)) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::string completion_text::push(std::uint8_t byte) {
  if (stopped_)
    return {};
  held_.push_back(static_cast<char>(byte));
  auto first = std::string::npos; // the earliest stop string in the bytes
  for (const auto& s : stop_)
    first = std::min(first, held_.find(s, lead_));
  if (first != std::string::npos) {
    stopped_ = true;
    auto out = utf8_replacing(std::string_view{held_}.substr(0, first));
    held_.clear();
    return out;
  }
  // Hold the longest end of the bytes that begins a stop string, and an unfinished character.
  size_t hold = 0;
  for (const auto& s : stop_)
    for (size_t n = std::min(s.size() - 1, held_.size() - lead_); n > hold; --n)
      if (std::string_view{held_}.substr(held_.size() - n) == std::string_view{s}.substr(0, n)) {
        hold = n;
        break;
      }
  const std::string_view before = std::string_view{held_}.substr(0, held_.size() - hold);
  const auto unfinished = hold == 0 ? unfinished_utf8_tail(before) : 0;
  const auto send = before.size() - unfinished;
  auto out = utf8_replacing(before.substr(0, send));
  held_.erase(0, send);
  lead_ -= std::min(lead_, send);
  return out;
}

std::string completion_text::lead(std::string_view bytes) {
  held_.append(bytes);
  const auto unfinished = unfinished_utf8_tail(held_);
  auto out = utf8_replacing(std::string_view{held_}.substr(0, held_.size() - unfinished));
  held_.erase(0, held_.size() - unfinished);
  lead_ = held_.size(); // bytes no stop string may begin in
  return out;
}

std::string completion_text::finish() {
  auto out = utf8_replacing(held_);
  held_.clear();
  lead_ = 0;
  return out;
}

} // namespace eoe::net
