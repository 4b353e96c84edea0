#pragma once
// The TLS flags of the commands that link to a cluster: --tls-ca, --tls-cert and --tls-key
// (an encrypted key's passphrase from the environment's EOE_TLS_PASSPHRASE), or --cluster FILE
// for the [tls] of a cluster file.

#include "net/tls_settings.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace eoe::cli {

struct tls_options {
  std::string cluster, ca, cert, key;

  /// Adds the flags to cmd; `with_cluster`: also --cluster FILE (not where the command takes
  /// a cluster file already).
  void add(CLI::App* cmd, bool with_cluster = true);

  /// The credentials, checked (check_tls); none when no flag is given. Throws command_error
  /// naming the flag and the file when they are incomplete or unusable.
  net::tls_settings resolve() const;
};

} // namespace eoe::cli
