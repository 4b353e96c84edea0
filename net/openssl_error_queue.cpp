#include "net/openssl_error_queue.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace {

/// OpenSSL's own definition of `name`: the next one after this program's in search order.
template <class Function>
Function openssl_definition(const char* name) {
  auto* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) { // libssl is linked into every program with this file: cannot happen
    std::fprintf(stderr, "eoe: OpenSSL's %s not found: %s\n", name, dlerror());
    std::abort();
  }
  return reinterpret_cast<Function>(f);
}

} // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto openssl = openssl_definition<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return openssl(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto openssl = openssl_definition<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return openssl(ssl, buf, num);
}

int SSL_connect(SSL* ssl) {
  static const auto openssl = openssl_definition<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return openssl(ssl);
}

int SSL_accept(SSL* ssl) {
  static const auto openssl = openssl_definition<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return openssl(ssl);
}

} // extern "C"

namespace eoe::net {

bool tls_calls_start_clean() {
  return dlsym(RTLD_DEFAULT, "SSL_read") == reinterpret_cast<void*>(&SSL_read);
}

} // namespace eoe::net
