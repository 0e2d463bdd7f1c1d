/*
 * wrk-client-cert.c: an LD_PRELOAD shim that gives wrk a TLS client certificate.
 *
 * madoguchid's store listener requires mutual TLS (DESIGN.md §2), and wrk has no option for a
 * client certificate. Debian's wrk links libssl dynamically, so this shim interposes
 * SSL_CTX_new(): it calls the real one (found with dlsym(RTLD_NEXT)) and then loads the
 * certificate chain and key named by $WRK_CLIENT_CERT and $WRK_CLIENT_KEY (PEM files) into
 * every new context. Without WRK_CLIENT_CERT it changes nothing.
 *
 * Used by tests/bench/http.sh only (never installed):
 *   cc -shared -fPIC -o wrk-client-cert.so wrk-client-cert.c -ldl -lssl
 *   LD_PRELOAD=./wrk-client-cert.so WRK_CLIENT_CERT=center.pem WRK_CLIENT_KEY=center.key wrk ...
 * A certificate or key that cannot be loaded is a fatal error (exit 1 with a message), so a
 * benchmark never silently measures handshake failures instead of requests.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

typedef SSL_CTX *(*ssl_ctx_new_fn)(const SSL_METHOD *method);

/* shim_fail: print what went wrong with OpenSSL's reason and end the process. */
static void shim_fail(const char *what, const char *path)
{
	char reason[256];
	ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
	fprintf(stderr, "wrk-client-cert: %s %s: %s\n", what, path, reason);
	exit(1);
}

/*
 * SSL_CTX_new: the real SSL_CTX_new(), then the client certificate and key from the
 * environment. Returns the context (NULL only when the real call fails).
 */
SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
{
	ssl_ctx_new_fn real_new = (ssl_ctx_new_fn)dlsym(RTLD_NEXT, "SSL_CTX_new");
	if (real_new == NULL) {
		fprintf(stderr, "wrk-client-cert: cannot find the real SSL_CTX_new: %s\n",
			dlerror());
		exit(1);
	}
	SSL_CTX *ctx = real_new(method);
	const char *cert = getenv("WRK_CLIENT_CERT");
	const char *key = getenv("WRK_CLIENT_KEY");

	if (ctx == NULL || cert == NULL || cert[0] == '\0')
		return ctx;
	if (key == NULL || key[0] == '\0')
		key = cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		shim_fail("cannot load client certificate", cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		shim_fail("cannot load client key", key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		shim_fail("client key does not match certificate", cert);
	return ctx;
}
