#pragma once
// A progress bar on a terminal, plain lines elsewhere (logs, CI, pipes).

#include <chrono>
#include <cstdio>
#include <string>

namespace eoe::cli {

class progress {
public:
  /// Draws on `out` when it is a terminal; otherwise update() is silent and only line() prints.
  explicit progress(std::FILE* out);

  /// Redraws the bar: done of total, with a short note (loss, rate).
  void update(long done, long total, const std::string& note);

  /// Prints a whole line (clearing the bar first on a terminal).
  void line(const std::string& text);

  bool is_terminal() const noexcept {
    return tty_;
  }

private:
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point last_;
};

} // namespace eoe::cli
