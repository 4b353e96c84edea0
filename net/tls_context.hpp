#pragma once
// The TLS credentials of an eoe process in use: checked before anything starts, an Asio SSL
// context for the links of our own (data plane, trace stream), and a handshake of our own that
// says why a peer refused a link (CAF's openssl module only reports that it closed).

#include "net/tls_settings.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio::ssl {
class context;
} // namespace boost::asio::ssl

namespace eoe::net {

/// The setting of [tls] (or the --tls-* flag) a problem is about.
enum class tls_field : std::uint8_t { certificate, key, ca, passphrase };

/// "certificate", "key", "ca", "passphrase": the key's name in [tls].
std::string_view to_string(tls_field f) noexcept;

/// One thing wrong with a process's credentials; the message names the file.
struct tls_problem {
  tls_field field;
  std::string message;

  bool operator==(const tls_problem&) const = default;
};

/// Reads and checks the credentials: every file readable and PEM, the key decrypted by the
/// passphrase (or not encrypted) and the certificate's own, the certificate valid against ca
/// as a TLS client and as a TLS server (every process of a cluster is both). Empty: usable.
/// Why up front: CAF's openssl module reads the files again for each connection and throws
/// from its network thread when it cannot, and OpenSSL asks a terminal for a passphrase that
/// is missing; neither must happen inside a running node.
std::vector<tls_problem> check_tls(const tls_settings& tls);

/// An Asio SSL context with this process's certificate and key that verifies every peer
/// against ca and refuses a peer without a certificate (mutual authentication; the peer's
/// name is not checked: a cluster's members are whoever holds a certificate of its CA).
/// Throws std::runtime_error when the files do not load (check_tls says why first).
std::shared_ptr<boost::asio::ssl::context> make_ssl_context(const tls_settings& tls);

/// Why a TLS link to host:port is refused, found by a handshake of our own and a first read
/// (TLS 1.3 refuses a client's certificate after the client's handshake is done), both within
/// `timeout`: for example "127.0.0.1:4401 refused this process's certificate (/etc/eoe/n1.pem):
/// tlsv1 alert unknown ca". "" when nothing was found to be wrong (or nobody listens).
std::string diagnose_tls(const std::string& host, std::uint16_t port, const tls_settings& tls,
                         std::chrono::milliseconds timeout = std::chrono::seconds(3));

} // namespace eoe::net
