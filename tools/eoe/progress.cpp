#include "tools/eoe/progress.hpp"

#include <unistd.h>

namespace eoe::cli {

progress::progress(std::FILE* out) : out_(out), tty_(isatty(fileno(out)) != 0) {
  // nop
}

void progress::update(long done, long total, const std::string& note) {
  if (!tty_)
    return;
  const auto now = std::chrono::steady_clock::now();
  if (done != total && now - last_ < std::chrono::milliseconds(100))
    return;
  last_ = now;
  constexpr int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(width - filled), '.');
  std::fprintf(out_, "\r[%s] %ld/%ld %s\x1b[K", bar.c_str(), done, total, note.c_str());
  std::fflush(out_);
}

void progress::line(const std::string& text) {
  if (tty_)
    std::fprintf(out_, "\r\x1b[K");
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

} // namespace eoe::cli
