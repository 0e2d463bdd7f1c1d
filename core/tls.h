/*
 * tls.h: OpenSSL server contexts for the store listener.
 *
 * tls_server_context() builds an SSL_CTX from the listener's config: TLS 1.2 or 1.3 as the
 * minimum (never below), the server's certificate chain and key, and a required client
 * certificate that must chain to client_ca (mutual TLS, DESIGN §2).  A context is immutable
 * once built; a reload builds a new one for new connections while the live connections keep
 * the old one through OpenSSL's own reference count.
 */
#ifndef MDG_TLS_H
#define MDG_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

/*
 * Returns a new context, or NULL with msg filled ("file:line:column: listeners.store.tls: …")
 * when a certificate, key or CA cannot be loaded or the key does not match the certificate.
 */
SSL_CTX *tls_server_context(const struct config *cfg, char *msg, size_t msg_size);

/* Appends OpenSSL's queued error reasons to msg (and clears the queue). */
void tls_error_string(char *msg, size_t msg_size);

#endif
