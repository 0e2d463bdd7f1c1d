/*
 * tls.c: building the store listener's OpenSSL context.
 *
 * Policy lives here and nowhere else: minimum protocol TLS 1.2 (or 1.3 by config); for TLS 1.2
 * only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305), for TLS 1.3
 * OpenSSL's defaults (all AEAD); no renegotiation, no compression, and a client certificate
 * required and verified against the configured CA.
 * Called on the loop thread at start-up and on reload; the context it returns is shared,
 * read-only, by every connection accepted while it is current.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "tls.h"

/* TLS 1.2 suites: ECDHE key exchange, AEAD only (the Mozilla "intermediate" choice). */
#define TLS_CIPHERS_TLS12 "ECDHE+AESGCM:ECDHE+CHACHA20"

void tls_error_string(char *msg, size_t msg_size)
{
	unsigned long e;
	size_t len = strlen(msg);
	while ((e = ERR_get_error()) != 0) {
		if (len + 3 >= msg_size)
			continue; /* keep draining the queue */
		char reason[256];
		ERR_error_string_n(e, reason, sizeof reason);
		int n = snprintf(msg + len, msg_size - len, ": %s", reason);
		if (n > 0)
			len += (size_t)n < msg_size - len ? (size_t)n : msg_size - len - 1;
	}
}

/* Fills msg with the config position and what failed, then OpenSSL's reasons. */
static SSL_CTX *tls_fail(SSL_CTX *ctx, const struct config *cfg, char *msg, size_t msg_size,
			 const char *what, const char *file)
{
	snprintf(msg, msg_size, "%s:%d:%d: listeners.store.tls: %s %s", cfg->path,
		 cfg->store.tls.mark.line, cfg->store.tls.mark.column, what, file ? file : "");
	tls_error_string(msg, msg_size);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_server_context(const struct config *cfg, char *msg, size_t msg_size)
{
	const struct config_tls *t = &cfg->store.tls;
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return tls_fail(NULL, cfg, msg, msg_size, "cannot create a TLS context", NULL);

	int min = t->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
	if (SSL_CTX_set_min_proto_version(ctx, min) != 1)
		return tls_fail(ctx, cfg, msg, msg_size, "cannot set the minimum TLS version",
				NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* OpenSSL's default TLS 1.2 list still has CBC suites (LUCKY13-class padding oracles,
	 * testssl.sh reports them) and RSA key transport; every client we serve speaks AEAD. */
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_TLS12) != 1)
		return tls_fail(ctx, cfg, msg, msg_size, "cannot set the TLS 1.2 cipher suites",
				NULL);

	if (SSL_CTX_use_certificate_chain_file(ctx, t->certificate) != 1)
		return tls_fail(ctx, cfg, msg, msg_size, "cannot load the certificate",
				t->certificate);
	if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1)
		return tls_fail(ctx, cfg, msg, msg_size, "cannot load the private key", t->key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return tls_fail(ctx, cfg, msg, msg_size,
				"the private key does not match the certificate", t->key);

	if (SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1)
		return tls_fail(ctx, cfg, msg, msg_size, "cannot load the client CA", t->client_ca);
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
	if (names == NULL)
		return tls_fail(ctx, cfg, msg, msg_size, "no CA certificate in", t->client_ca);
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);

	/* Resumed sessions keep the verified client identity; OpenSSL requires a context id. */
	static const unsigned char sid_ctx[] = "madoguchi-store";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	return ctx;
}
