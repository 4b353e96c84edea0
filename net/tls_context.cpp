#include "net/tls_context.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace eoe::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;

std::string_view to_string(tls_field f) noexcept {
  switch (f) {
    case tls_field::certificate:
      return "certificate";
    case tls_field::key:
      return "key";
    case tls_field::ca:
      return "ca";
    case tls_field::passphrase:
      return "passphrase";
  }
  return "?";
}

namespace {

std::string quoted(const std::string& path) {
  return "\"" + path + "\"";
}

/// The whole file, or why it cannot be read (as the system says it).
bool read_file(const std::string& path, std::string& out, std::string& why) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    why = "cannot read " + quoted(path) + ": it is a directory";
    return false;
  }
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    why = "cannot read " + quoted(path) + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    why = "cannot read " + quoted(path) + ": " + std::strerror(errno);
    return false;
  }
  out = text.str();
  return true;
}

struct bio_deleter {
  void operator()(BIO* b) const {
    BIO_free(b);
  }
};
struct x509_deleter {
  void operator()(X509* x) const {
    X509_free(x);
  }
};
struct pkey_deleter {
  void operator()(EVP_PKEY* k) const {
    EVP_PKEY_free(k);
  }
};
struct store_deleter {
  void operator()(X509_STORE* s) const {
    X509_STORE_free(s);
  }
};
struct store_ctx_deleter {
  void operator()(X509_STORE_CTX* c) const {
    X509_STORE_CTX_free(c);
  }
};
struct stack_deleter {
  void operator()(STACK_OF(X509) * s) const {
    sk_X509_pop_free(s, X509_free);
  }
};
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;
using x509_ptr = std::unique_ptr<X509, x509_deleter>;

bio_ptr memory_bio(const std::string& text) {
  return bio_ptr{BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))};
}

/// Every certificate of a PEM text, in order.
std::vector<x509_ptr> certificates(const std::string& pem) {
  std::vector<x509_ptr> out;
  auto bio = memory_bio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
    out.emplace_back(x);
  ERR_clear_error(); // the end of the text reads as an error
  return out;
}

/// What the passphrase callback of a key read saw.
struct passphrase_use {
  const std::string* passphrase;
  bool asked = false;
};

/// Hands OpenSSL the configured passphrase, never a terminal prompt.
int give_passphrase(char* buf, int size, int, void* user) {
  auto* use = static_cast<passphrase_use*>(user);
  use->asked = true;
  const auto& p = *use->passphrase;
  if (p.empty() || static_cast<int>(p.size()) >= size)
    return 0;
  std::memcpy(buf, p.data(), p.size());
  return static_cast<int>(p.size());
}

} // namespace

std::vector<tls_problem> check_tls(const tls_settings& tls) {
  std::vector<tls_problem> out;
  auto problem = [&](tls_field f, std::string msg) { out.push_back({f, std::move(msg)}); };
  std::string cert_pem, key_pem, ca_pem, why;
  const bool have_cert = read_file(tls.certificate, cert_pem, why);
  if (!have_cert)
    problem(tls_field::certificate, why);
  const bool have_key = read_file(tls.key, key_pem, why);
  if (!have_key)
    problem(tls_field::key, why);
  const bool have_ca = read_file(tls.ca, ca_pem, why);
  if (!have_ca)
    problem(tls_field::ca, why);
  std::vector<x509_ptr> chain, cas;
  if (have_cert) {
    chain = certificates(cert_pem);
    if (chain.empty())
      problem(tls_field::certificate, quoted(tls.certificate) + " holds no PEM certificate");
  }
  if (have_ca) {
    cas = certificates(ca_pem);
    if (cas.empty())
      problem(tls_field::ca, quoted(tls.ca) + " holds no PEM certificate");
  }
  std::unique_ptr<EVP_PKEY, pkey_deleter> key;
  if (have_key) {
    passphrase_use use{&tls.passphrase};
    auto bio = memory_bio(key_pem);
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, give_passphrase, &use));
    ERR_clear_error();
    if (!key && use.asked && tls.passphrase.empty())
      problem(tls_field::key, quoted(tls.key) + " is encrypted and no passphrase is given");
    else if (!key && use.asked)
      problem(tls_field::passphrase, "does not decrypt " + quoted(tls.key));
    else if (!key)
      problem(tls_field::key, quoted(tls.key) + " holds no PEM private key");
  }
  if (!chain.empty() && key && X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    problem(tls_field::key,
            quoted(tls.key) + " is not the key of the certificate " + quoted(tls.certificate));
  }
  if (!chain.empty() && !cas.empty()) {
    std::unique_ptr<X509_STORE, store_deleter> store{X509_STORE_new()};
    for (auto& c : cas)
      X509_STORE_add_cert(store.get(), c.get());
    std::unique_ptr<STACK_OF(X509), stack_deleter> untrusted{sk_X509_new_null()};
    for (size_t i = 1; i < chain.size(); ++i) {
      X509_up_ref(chain[i].get());
      sk_X509_push(untrusted.get(), chain[i].get());
    }
    // Every process dials its peers and is dialled by them.
    for (auto [purpose, role] : {std::pair{X509_PURPOSE_SSL_SERVER, "TLS server"},
                                 std::pair{X509_PURPOSE_SSL_CLIENT, "TLS client"}}) {
      std::unique_ptr<X509_STORE_CTX, store_ctx_deleter> ctx{X509_STORE_CTX_new()};
      X509_STORE_CTX_init(ctx.get(), store.get(), chain.front().get(), untrusted.get());
      X509_STORE_CTX_set_purpose(ctx.get(), purpose);
      if (X509_verify_cert(ctx.get()) != 1) {
        problem(tls_field::certificate,
                quoted(tls.certificate) + " does not verify against the ca " + quoted(tls.ca)
                  + " as a " + role + ": "
                  + X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
        ERR_clear_error();
        break;
      }
    }
  }
  return out;
}

std::shared_ptr<ssl::context> make_ssl_context(const tls_settings& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls);
  try {
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                     | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                     | ssl::context::no_tlsv1_1);
    // Also when there is none: OpenSSL must never ask a terminal.
    ctx->set_password_callback(
      [p = tls.passphrase](std::size_t, ssl::context::password_purpose) { return p; });
    ctx->use_certificate_chain_file(tls.certificate);
    ctx->use_private_key_file(tls.key, ssl::context::pem);
    ctx->load_verify_file(tls.ca);
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("TLS: cannot load the certificate " + tls.certificate + ", key "
                             + tls.key + " or ca " + tls.ca + ": " + e.code().message());
  }
  return ctx;
}

std::string diagnose_tls(const std::string& host, std::uint16_t port, const tls_settings& tls,
                         std::chrono::milliseconds timeout) {
  std::shared_ptr<ssl::context> ctx;
  try {
    ctx = make_ssl_context(tls);
  } catch (const std::exception& e) {
    return e.what();
  }
  const auto where = host + ":" + std::to_string(port);
  asio::io_context io;
  ssl::stream<tcp::socket> stream{io, *ctx};
  boost::system::error_code ec;
  tcp::resolver resolver{io};
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec)
    return {};
  std::string verdict;
  bool done = false;
  char byte = 0;
  asio::async_connect(stream.lowest_layer(), endpoints, [&](boost::system::error_code ec,
                                                             const tcp::endpoint&) {
    if (ec) {
      done = true; // nobody listens: the caller's own error says so
      return;
    }
    stream.async_handshake(ssl::stream_base::client, [&](boost::system::error_code ec) {
      if (ec) {
        done = true;
        const auto verify = SSL_get_verify_result(stream.native_handle());
        if (verify != X509_V_OK)
          verdict = "the certificate of " + where + " does not verify against the ca "
                    + quoted(tls.ca) + ": " + X509_verify_cert_error_string(verify);
        else if (ec.category() == asio::error::get_ssl_category()
                 && ERR_GET_REASON(static_cast<unsigned long>(ec.value()))
                      == SSL_R_WRONG_VERSION_NUMBER)
          verdict = where + " does not speak TLS (a process without [tls]?)";
        else
          verdict = where + " refused the TLS handshake with this process's certificate "
                    + quoted(tls.certificate) + ": " + ec.message();
        return;
      }
      // TLS 1.3 tells a client that its certificate was refused in the first record after
      // the handshake; a CAF node speaks first, so a good link yields a byte here.
      asio::async_read(stream, asio::buffer(&byte, 1),
                       [&](boost::system::error_code ec, std::size_t) {
                         done = true;
                         if (ec && ec != asio::error::eof
                             && ec.category() == asio::error::get_ssl_category())
                           verdict = where + " refused this process's certificate "
                                     + quoted(tls.certificate) + ": " + ec.message();
                       });
    });
  });
  io.run_for(timeout);
  if (!done)
    return {};
  return verdict;
}

} // namespace eoe::net
