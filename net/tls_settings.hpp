#pragma once
// The TLS credentials of a cluster process: [tls] in a cluster file, or the --tls-* flags of a
// client. When given, every link between the cluster's processes (CAF's links, the data plane,
// the trace stream) runs over TLS, and each side verifies the other's certificate against `ca`.

#include <string>

namespace eoe::net {

/// [tls]: PEM files (absolute once loaded: relative paths are resolved against the folder of
/// the cluster file); all three or none.
struct tls_settings {
  std::string certificate; ///< this process's certificate (chain), signed by `ca`
  std::string key;         ///< its private key
  std::string ca;          ///< the certificates a peer's certificate must verify against
  std::string passphrase;  ///< decrypts `key`; "" = not encrypted; env EOE_TLS_PASSPHRASE wins

  bool enabled() const {
    return !certificate.empty() || !key.empty() || !ca.empty();
  }
  bool operator==(const tls_settings&) const = default;
};

} // namespace eoe::net
