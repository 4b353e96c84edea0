#include "tools/eoe/tls_options.hpp"

#include "net/cluster_config.hpp"
#include "net/tls_context.hpp"
#include "tools/eoe/commands.hpp"

#include <cstdlib>
#include <filesystem>

namespace eoe::cli {

namespace {

std::string flag_of(net::tls_field f) {
  switch (f) {
    case net::tls_field::certificate:
      return "--tls-cert";
    case net::tls_field::key:
      return "--tls-key";
    case net::tls_field::ca:
      return "--tls-ca";
    case net::tls_field::passphrase:
      return "EOE_TLS_PASSPHRASE";
  }
  return "?";
}

} // namespace

void tls_options::add(CLI::App* cmd, bool with_cluster) {
  auto* ca_opt = cmd->add_option("--tls-ca", ca,
                                 "PEM certificates of the cluster's CA (links over TLS; with "
                                 "--tls-cert and --tls-key)");
  auto* cert_opt = cmd->add_option("--tls-cert", cert, "this process's PEM certificate");
  auto* key_opt = cmd->add_option("--tls-key", key,
                                  "its PEM private key (encrypted: the passphrase from "
                                  "EOE_TLS_PASSPHRASE)");
  if (with_cluster) {
    auto* cluster_opt = cmd->add_option("--cluster", cluster,
                                        "take the credentials from this cluster file's [tls]")
                          ->check(CLI::ExistingFile);
    for (auto* o : {ca_opt, cert_opt, key_opt})
      cluster_opt->excludes(o);
  }
}

net::tls_settings tls_options::resolve() const {
  if (!cluster.empty()) {
    auto c = net::load_cluster_config(cluster);
    if (!c)
      throw command_error{c.error().message};
    return c->tls;
  }
  if (ca.empty() && cert.empty() && key.empty())
    return {};
  std::string missing;
  for (auto [value, flag] : {std::pair{&ca, "--tls-ca"}, std::pair{&cert, "--tls-cert"},
                             std::pair{&key, "--tls-key"}})
    if (value->empty())
      missing += (missing.empty() ? "" : " and ") + std::string{flag};
  if (!missing.empty())
    throw command_error{"--tls-ca, --tls-cert and --tls-key go together: " + missing
                        + " missing"};
  auto absolute = [](const std::string& p) {
    return std::filesystem::absolute(p).lexically_normal().string();
  };
  net::tls_settings tls{absolute(cert), absolute(key), absolute(ca), ""};
  if (const char* p = std::getenv("EOE_TLS_PASSPHRASE"))
    tls.passphrase = p;
  std::string problems;
  for (auto& p : net::check_tls(tls))
    problems += (problems.empty() ? "" : "\n") + flag_of(p.field) + ": " + p.message;
  if (!problems.empty())
    throw command_error{problems};
  return tls;
}

} // namespace eoe::cli
