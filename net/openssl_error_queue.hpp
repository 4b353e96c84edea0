#pragma once
// Every TLS call of an eoe process starts with an empty OpenSSL error queue.
//
// OpenSSL keeps one error queue per thread, and SSL_get_error reads it first: "the current
// thread's error queue must be empty before the TLS/SSL I/O operation is attempted, or
// SSL_get_error() will not work reliably" (SSL_get_error(3)). CAF 0.17.6's openssl module
// drains the queue only inside log statements, which Debian's build compiles out, and never
// empties it before a call. So one failed handshake (bytes that are not TLS, a certificate of
// another CA) or one peer gone without close_notify (every CAF peer: CAF never sends it) left
// an error on the multiplexer's thread, and the next SSL_read of any link there that found half
// a record returned "want read", was read as that stale error, and closed a healthy link: a
// head lost its node links after a client left. Defining SSL_read, SSL_write, SSL_connect and
// SSL_accept in this library puts a call that empties the queue in front of OpenSSL's own for
// every caller in the process, CAF's shared library included (the executable's definitions
// come first in the dynamic linker's search).

namespace eoe::net {

/// True when the SSL_read that CAF's library reaches is the one of this file (use_tls calls
/// it, which also keeps this file in every program that uses TLS links).
bool tls_calls_start_clean();

} // namespace eoe::net
