/* fake_common: what the local fake services (fake-apns, fake-webpush) share:
 * their stderr messages, a TLS server context, a loopback listener and the
 * port file tests wait for. Test tools only. */
#ifndef FAKE_COMMON_H
#define FAKE_COMMON_H

#include <openssl/ssl.h>

/* The program name that prefixes every message ("fake-apns"). */
void fake_set_name(const char *name);

/* "NAME: message\n" on stderr. */
void fake_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A TLS server context (TLS 1.2 or newer, partial writes) with the PEM
 * certificate chain `cert` and key `key`; NULL after a message when they
 * cannot be used. The caller adds what is particular to it (ALPN, ...). */
SSL_CTX *fake_tls_server(const char *cert, const char *key);

/* A non-blocking listener on 127.0.0.1:port (0: any free port) with
 * `backlog`; *bound gets the port it got. -1 after a message. */
int fake_listen(int port, int backlog, int *bound);

/* Writes "PORT\n" to `path` atomically (a temporary file renamed), so a
 * test that waits for the file never reads half of it. 0, or -1 after a
 * message. */
int fake_write_port_file(const char *path, int port);

#endif
