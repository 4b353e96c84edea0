#pragma once
// The tests' raw TCP client: a blocking socket to a server on loopback, for sending exactly the
// bytes a test means (frames cut short, lines that are not JSON) and seeing whether the server
// closed the connection. Every wait is bounded (10 s): a test that fails does not hang.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eoe::test {

class raw_socket {
public:
  /// Connects to 127.0.0.1:port.
  explicit raw_socket(std::uint16_t port) {
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_port = htons(port);
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    open(at);
  }

  /// Connects to "host:port" (an IPv4 address).
  explicit raw_socket(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    REQUIRE(inet_pton(AF_INET, address.substr(0, colon).c_str(), &at.sin_addr) == 1);
    open(at);
  }

  ~raw_socket() {
    ::close(fd_);
  }
  raw_socket(const raw_socket&) = delete;
  raw_socket& operator=(const raw_socket&) = delete;

  /// "127.0.0.1:port" of this end, as a server's log names its peer.
  std::string name() const {
    sockaddr_in me{};
    socklen_t len = sizeof me;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&me), &len);
    return "127.0.0.1:" + std::to_string(ntohs(me.sin_port));
  }

  /// Sends every byte; false when the server has closed the connection.
  [[nodiscard]] bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  /// Ends this side (the server reads the end of the stream).
  void finish() {
    ::shutdown(fd_, SHUT_WR);
  }

  /// The next line received (without its newline); nullopt when the connection ended or
  /// nothing came for 10 s.
  std::optional<std::string> line() {
    for (;;) {
      if (const auto nl = in_.find('\n'); nl != std::string::npos) {
        auto out = in_.substr(0, nl);
        in_.erase(0, nl + 1);
        return out;
      }
      char buf[4096];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        return std::nullopt;
      in_.append(buf, static_cast<size_t>(n));
    }
  }

  /// Whether the server closed the connection within 10 s (what came before is skipped).
  bool wait_closed() {
    char buf[4096];
    for (;;) {
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET))
        return true;
      if (n < 0)
        return false;
    }
  }

private:
  void open(const sockaddr_in& at) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&at), sizeof at) == 0);
    const timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  int fd_ = -1;
  std::string in_;
};

} // namespace eoe::test
