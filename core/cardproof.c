/*
 * cardproof.c: verification of the card proof headers (contract in cardproof.h).
 *
 * The CA file is parsed once into an X509_STORE with the verification policy set on the
 * store's own parameters (partial chains, security level 2: no SHA-1, no key under 112 bits
 * anywhere in the chain); SHA-256 is fetched once.  After cardproof_ctx_new() nothing in the
 * context is written, so threads share it: X509_STORE lookups take OpenSSL's own lock, and the
 * CA certificates' extension caches are filled at load (X509_check_ca), not on first use.
 *
 * Per call, in this order (cheap checks first, so garbage costs no public-key operation):
 * trim and strict-base64-decode both headers; d2i the certificate (whole buffer); serial; not a
 * CA; key type and size; chain at `now` (one CA signature check); body signature (one RSA or
 * ECDSA verify).
 *
 * Cost, measured on the 2-vCPU development VM with OpenSSL 3.0 (-O2, 1000-call loop):
 * about 0.18-0.26 ms per call: RSA-2048 card ~175 us under an RSA CA and ~220 us under a P-256
 * CA; P-256 card ~225 / ~260 us.  Of that, d2i_X509 alone is ~140 us (OpenSSL 3.0 sets up a
 * provider decoder for the public key on every parse, openssl/openssl#19119; 3.1 and later
 * are faster), the CA signature ~20 us
 * (RSA) or ~70 us (P-256), the card signature ~20 us (RSA) or ~70 us (ECDSA).  1000 req/s is
 * therefore ~0.2-0.3 of a core: run it on the thread pool, not on the loop.  Two threads gave
 * ~4800 calls/s in total (OpenSSL 3.0's internal locks limit scaling somewhat).  Every OpenSSL
 * error left on the thread's queue is cleared before returning.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "cardproof.h"
#include "ossl.h"

#define CARDPROOF_SIG_MAX     1024 /* bytes of a decoded signature (RSA-4096 is 512) */
#define CARDPROOF_CHAIN_DEPTH 4	   /* CAs between the card and an anchor, at most */

/*
 * Verified card certificates, so a card that signs several requests (a resident printing
 * several certificates, a reprint) is parsed and chain-checked once: in OpenSSL 3.0,
 * d2i_X509() and the chain check are about two thirds of a card proof.  Four-way set
 * associative by the certificate's SHA-256, so a lookup is four slots under the lock; a new
 * card replaces the least recently used of its set (direct mapping made a quarter of 300
 * cards evict each other, and two ways still let three of them share a set).  An
 * entry is used only within CARDPROOF_CACHE_TTL of its chain check, only while the card itself
 * is valid at `now` and before the earliest end of the CAs' validity; the body's signature is
 * checked on every request.
 */
#define CARDPROOF_CACHE_SETS 1024
#define CARDPROOF_CACHE_WAYS 4
#define CARDPROOF_CACHE_TTL  600 /* seconds */

struct cardproof_cached {
	unsigned char sha256[32];
	X509 *cert; /* NULL: empty slot */
	struct cardproof_result res;
	time_t verified_at;
	uint64_t used; /* the cache's clock at the last hit or fill: least recent is replaced */
};

struct cardproof_cache {
	pthread_mutex_t lock;
	struct cardproof_cached slot[CARDPROOF_CACHE_SETS][CARDPROOF_CACHE_WAYS];
	uint64_t hits, misses, clock;
};

struct cardproof_ctx {
	X509_STORE *store;
	pthread_rwlock_t crl_lock; /* guards crls: read to look up, write to replace */
	STACK_OF(X509_CRL) * crls; /* the card CAs' CRLs, or NULL: revocation not checked */
	EVP_MD *sha256;
	size_t ca_count;
	time_t ca_not_after;	       /* the earliest notAfter of the configured CAs */
	struct cardproof_cache *cache; /* mutable behind a const ctx: its own lock */
};

__attribute__((format(printf, 4, 5))) static int cardproof_fail(char *err, size_t err_size,
								int status, const char *fmt, ...)
{
	if (err != NULL && err_size > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	ERR_clear_error();
	return status;
}

void cardproof_ctx_free(struct cardproof_ctx *ctx)
{
	if (ctx == NULL)
		return;
	X509_STORE_free(ctx->store);
	sk_X509_CRL_pop_free(ctx->crls, X509_CRL_free);
	pthread_rwlock_destroy(&ctx->crl_lock);
	EVP_MD_free(ctx->sha256);
	if (ctx->cache != NULL) {
		for (size_t i = 0; i < CARDPROOF_CACHE_SETS; i++)
			for (size_t w = 0; w < CARDPROOF_CACHE_WAYS; w++)
				X509_free(ctx->cache->slot[i][w].cert);
		pthread_mutex_destroy(&ctx->cache->lock);
		free(ctx->cache);
	}
	free(ctx);
}

void cardproof_cache_stats(const struct cardproof_ctx *ctx, uint64_t *hits, uint64_t *misses)
{
	*hits = *misses = 0;
	if (ctx == NULL || ctx->cache == NULL)
		return;
	pthread_mutex_lock(&ctx->cache->lock);
	*hits = ctx->cache->hits;
	*misses = ctx->cache->misses;
	pthread_mutex_unlock(&ctx->cache->lock);
}

/* The set a digest belongs to. */
static struct cardproof_cached *cardproof_cache_set(struct cardproof_cache *c,
						    const unsigned char sha[32])
{
	return c->slot[(sha[0] | (unsigned)sha[1] << 8) % CARDPROOF_CACHE_SETS];
}

/* The verified certificate with this digest, up-ref'd (the caller frees it), or NULL. */
static X509 *cardproof_cache_get(const struct cardproof_ctx *ctx, const unsigned char sha[32],
				 time_t now, struct cardproof_result *res)
{
	struct cardproof_cache *c = ctx->cache;
	X509 *cert = NULL;
	if (c == NULL || now >= ctx->ca_not_after)
		return NULL;
	struct cardproof_cached *set = cardproof_cache_set(c, sha);
	pthread_mutex_lock(&c->lock);
	for (size_t w = 0; w < CARDPROOF_CACHE_WAYS && cert == NULL; w++) {
		struct cardproof_cached *e = &set[w];
		if (e->cert != NULL && memcmp(e->sha256, sha, 32) == 0 &&
		    now - e->verified_at < CARDPROOF_CACHE_TTL && now >= e->verified_at &&
		    X509_up_ref(e->cert) == 1) {
			cert = e->cert;
			*res = e->res;
			e->used = ++c->clock;
		}
	}
	if (cert != NULL)
		c->hits++;
	else
		c->misses++;
	pthread_mutex_unlock(&c->lock);
	/* The card's own validity, at now: the entry may outlive it. */
	if (cert != NULL && (X509_cmp_time(X509_get0_notBefore(cert), &now) > 0 ||
			     X509_cmp_time(X509_get0_notAfter(cert), &now) <= 0)) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

static void cardproof_cache_put(const struct cardproof_ctx *ctx, const unsigned char sha[32],
				X509 *cert, const struct cardproof_result *res, time_t now)
{
	struct cardproof_cache *c = ctx->cache;
	if (c == NULL || X509_up_ref(cert) != 1)
		return;
	struct cardproof_cached *set = cardproof_cache_set(c, sha);
	pthread_mutex_lock(&c->lock);
	/* The same card (re-verified after its TTL), else an empty way, else the least recent. */
	struct cardproof_cached *e = &set[0];
	for (size_t w = 0; w < CARDPROOF_CACHE_WAYS; w++) {
		if (set[w].cert != NULL && memcmp(set[w].sha256, sha, 32) == 0) {
			e = &set[w];
			break;
		}
		if (set[w].cert == NULL || (e->cert != NULL && set[w].used < e->used))
			e = &set[w];
	}
	X509 *old = e->cert;
	memcpy(e->sha256, sha, 32);
	e->cert = cert;
	e->res = *res;
	e->verified_at = now;
	e->used = ++c->clock;
	pthread_mutex_unlock(&c->lock);
	X509_free(old);
}

size_t cardproof_ctx_ca_count(const struct cardproof_ctx *ctx)
{
	return ctx ? ctx->ca_count : 0;
}

/* Adds every certificate of the PEM file to ctx->store; each must be a CA. */
static int cardproof_load_cas(struct cardproof_ctx *ctx, const char *path, char *err,
			      size_t err_size)
{
	char why[256];
	errno = 0;
	BIO *bio = BIO_new_file(path, "r");
	if (bio == NULL)
		return cardproof_fail(
		    err, err_size, CARDPROOF_ERROR, "card_proof.ca: cannot open %s: %s", path,
		    errno ? strerror(errno) : ossl_reason(why, sizeof why, false));
	int rc = CARDPROOF_OK;
	X509 *x;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		ctx->ca_count++;
		/* The earliest end of any CA's validity: cached proofs are not used past it. */
		struct tm tm;
		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
			time_t end = timegm(&tm);
			if (ctx->ca_not_after == 0 || end < ctx->ca_not_after)
				ctx->ca_not_after = end;
		}
		if (X509_check_ca(x) == 0) {
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR,
					    "card_proof.ca: certificate %zu in %s is not a CA "
					    "certificate (basicConstraints CA:TRUE needed)",
					    ctx->ca_count, path);
		} else if (X509_STORE_add_cert(ctx->store, x) != 1) {
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR,
					    "card_proof.ca: certificate %zu in %s cannot be added "
					    "(listed twice?): %s",
					    ctx->ca_count, path,
					    ossl_reason(why, sizeof why, false));
		}
		X509_free(x);
		if (rc != CARDPROOF_OK)
			break;
	}
	if (rc == CARDPROOF_OK) {
		/* The loop ends at end of file (PEM_R_NO_START_LINE) or at a broken block. */
		unsigned long e = ERR_peek_last_error();
		if (e != 0 &&
		    !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR,
					    "card_proof.ca: %s has a PEM block that is not a valid "
					    "certificate after certificate %zu: %s",
					    path, ctx->ca_count,
					    ossl_reason(why, sizeof why, false));
		else if (ctx->ca_count == 0)
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR,
					    "card_proof.ca: no PEM certificate in %s", path);
	}
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

int cardproof_ctx_new(const char *ca_pem_path, struct cardproof_ctx **out, char *err,
		      size_t err_size)
{
	*out = NULL;
	if (ca_pem_path == NULL || ca_pem_path[0] == '\0')
		return cardproof_fail(err, err_size, CARDPROOF_ERROR,
				      "card_proof.ca: no CA file configured");
	struct cardproof_ctx *ctx = calloc(1, sizeof *ctx);
	if (ctx == NULL)
		return cardproof_fail(err, err_size, CARDPROOF_ERROR, "out of memory");
	ctx->cache = calloc(1, sizeof *ctx->cache);
	if (ctx->cache == NULL) {
		free(ctx);
		return cardproof_fail(err, err_size, CARDPROOF_ERROR, "out of memory");
	}
	pthread_mutex_init(&ctx->cache->lock, NULL);
	pthread_rwlock_init(&ctx->crl_lock, NULL);
	ctx->store = X509_STORE_new();
	ctx->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (ctx->store == NULL || ctx->sha256 == NULL) {
		cardproof_ctx_free(ctx);
		return cardproof_fail(err, err_size, CARDPROOF_ERROR,
				      "OpenSSL has no X509 store or SHA-256 (out of memory?)");
	}
	X509_VERIFY_PARAM *param = X509_STORE_get0_param(ctx->store);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
	X509_VERIFY_PARAM_set_auth_level(param, 2);
	X509_VERIFY_PARAM_set_depth(param, CARDPROOF_CHAIN_DEPTH);
	int rc = cardproof_load_cas(ctx, ca_pem_path, err, err_size);
	if (rc != CARDPROOF_OK) {
		cardproof_ctx_free(ctx);
		return rc;
	}
	*out = ctx;
	return CARDPROOF_OK;
}

/* The configured CA whose subject is the CRL's issuer and whose key signed it, or NULL. */
static X509 *cardproof_crl_signer(const struct cardproof_ctx *ctx, X509_CRL *crl)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(ctx->store);
	for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
		if (ca != NULL &&
		    X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
		    X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
			return ca;
	}
	return NULL;
}

int cardproof_load_crl(struct cardproof_ctx *ctx, const char *path, size_t *crls, size_t *revoked,
		       char *err, size_t err_size)
{
	char why[256];
	errno = 0;
	BIO *bio = BIO_new_file(path, "r");
	if (bio == NULL)
		return cardproof_fail(
		    err, err_size, CARDPROOF_ERROR, "card_proof.crl: cannot open %s: %s", path,
		    errno ? strerror(errno) : ossl_reason(why, sizeof why, false));
	STACK_OF(X509_CRL) *set = sk_X509_CRL_new_null();
	int rc = set != NULL ? CARDPROOF_OK
			     : cardproof_fail(err, err_size, CARDPROOF_ERROR, "out of memory");
	size_t n = 0, listed = 0;
	X509_CRL *crl;
	while (rc == CARDPROOF_OK && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
		n++;
		if (cardproof_crl_signer(ctx, crl) == NULL)
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR,
					    "card_proof.crl: CRL %zu in %s is not signed by a "
					    "card_proof.ca certificate",
					    n, path);
		else if (sk_X509_CRL_push(set, crl) <= 0)
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR, "out of memory");
		if (rc != CARDPROOF_OK) {
			X509_CRL_free(crl);
			break;
		}
		listed += (size_t)sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
	}
	if (rc == CARDPROOF_OK) {
		unsigned long e = ERR_peek_last_error();
		if (e != 0 &&
		    !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
			rc =
			    cardproof_fail(err, err_size, CARDPROOF_ERROR,
					   "card_proof.crl: %s has a PEM block that is not a valid "
					   "CRL after CRL %zu: %s",
					   path, n, ossl_reason(why, sizeof why, false));
		else if (n == 0)
			rc = cardproof_fail(err, err_size, CARDPROOF_ERROR,
					    "card_proof.crl: no PEM X509 CRL in %s", path);
	}
	ERR_clear_error();
	BIO_free(bio);
	if (rc != CARDPROOF_OK) {
		sk_X509_CRL_pop_free(set, X509_CRL_free);
		return rc;
	}
	pthread_rwlock_wrlock(&ctx->crl_lock);
	STACK_OF(X509_CRL) *old = ctx->crls;
	ctx->crls = set;
	pthread_rwlock_unlock(&ctx->crl_lock);
	sk_X509_CRL_pop_free(old, X509_CRL_free);
	if (crls != NULL)
		*crls = n;
	if (revoked != NULL)
		*revoked = listed;
	return CARDPROOF_OK;
}

/* CARDPROOF_REVOKED when the CRL of cert's issuer lists it; CARDPROOF_OK otherwise. */
static int cardproof_revocation(const struct cardproof_ctx *ctx, X509 *cert, char *err,
				size_t err_size)
{
	int revoked = 0;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&ctx->crl_lock);
	for (int i = 0; ctx->crls != NULL && i < sk_X509_CRL_num(ctx->crls) && !revoked; i++) {
		X509_CRL *crl = sk_X509_CRL_value(ctx->crls, i);
		X509_REVOKED *entry;
		if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)) == 0 &&
		    X509_CRL_get0_by_cert(crl, &entry, cert) == 1)
			revoked = 1;
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&ctx->crl_lock);
	return revoked ? cardproof_fail(err, err_size, CARDPROOF_REVOKED,
					"the card certificate is revoked (card_proof.crl)")
		       : CARDPROOF_OK;
}

/* Value of a standard base64 character, or -1. */
static int cardproof_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict base64 (RFC 4648 §4, padded, no whitespace, unused bits zero) of n characters into
 * out (room for n / 4 * 3 bytes).  Returns the decoded length, or -1.
 */
static long cardproof_b64_decode(const char *in, size_t n, unsigned char *out)
{
	if (n == 0 || n % 4 != 0)
		return -1;
	size_t pad = in[n - 1] == '=' ? (in[n - 2] == '=' ? 2 : 1) : 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int last = i + 4 == n;
		for (int k = 0; k < 4; k++) {
			if (last && (size_t)k >= 4 - pad) {
				v[k] = 0;
				continue;
			}
			v[k] = cardproof_b64_value((unsigned char)in[i + (size_t)k]);
			if (v[k] < 0)
				return -1;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		out[o++] = (unsigned char)(w >> 16);
		if (!last || pad < 2)
			out[o++] = (unsigned char)(w >> 8);
		else if ((w & 0xffff) != 0)
			return -1; /* "xx==" with nonzero unused bits */
		if (!last || pad < 1)
			out[o++] = (unsigned char)w;
		else if ((w & 0xff) != 0)
			return -1;
	}
	return (long)o;
}

/* The header value without surrounding spaces and tabs (HTTP OWS); *n its length. */
static const char *cardproof_trim(const char *s, size_t *n)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	*n = len;
	return s;
}

/* Decodes header `name` into a fresh buffer *out (caller frees).  Returns length or status. */
static long cardproof_header(const char *value, const char *name, unsigned char **out, char *err,
			     size_t err_size)
{
	*out = NULL;
	size_t n = 0;
	const char *s = value ? cardproof_trim(value, &n) : NULL;
	if (n == 0)
		return cardproof_fail(err, err_size, CARDPROOF_MISSING, "the %s header is missing",
				      name);
	if (n > CARDPROOF_HEADER_MAX)
		return cardproof_fail(err, err_size, CARDPROOF_MALFORMED,
				      "the %s header is longer than %d characters", name,
				      CARDPROOF_HEADER_MAX);
	*out = malloc(n / 4 * 3 + 3);
	if (*out == NULL)
		return cardproof_fail(err, err_size, CARDPROOF_ERROR, "out of memory");
	long len = cardproof_b64_decode(s, n, *out);
	if (len <= 0) {
		free(*out);
		*out = NULL;
		return cardproof_fail(
		    err, err_size, CARDPROOF_MALFORMED,
		    "the %s header is not valid base64 (standard alphabet, padded, "
		    "one line)",
		    name);
	}
	return len;
}

/* Upper-case hex of the serial, no leading zeros.  CARDPROOF_OK or CARDPROOF_MALFORMED. */
static int cardproof_serial(const X509 *cert, char out[CARDPROOF_SERIAL_MAX + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
	if (sn == NULL || ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER)
		return CARDPROOF_MALFORMED;
	const unsigned char *p = ASN1_STRING_get0_data(sn);
	int n = ASN1_STRING_length(sn);
	while (n > 0 && *p == 0) {
		p++;
		n--;
	}
	if (n > CARDPROOF_SERIAL_MAX / 2)
		return CARDPROOF_MALFORMED;
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		if (o > 0 || (p[i] >> 4) != 0)
			out[o++] = hex[p[i] >> 4];
		out[o++] = hex[p[i] & 15];
	}
	if (o == 0)
		out[o++] = '0';
	out[o] = '\0';
	return CARDPROOF_OK;
}

/* Checks the card's public key; fills type and bits. */
static int cardproof_key(X509 *cert, EVP_PKEY *key, struct cardproof_result *res, char *err,
			 size_t err_size)
{
	if (key == NULL)
		return cardproof_fail(err, err_size, CARDPROOF_UNSUPPORTED_KEY,
				      "card certificate public key cannot be decoded");
	int bits = EVP_PKEY_get_bits(key);
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_RSA:
		if (bits < CARDPROOF_RSA_MIN_BITS || bits > CARDPROOF_RSA_MAX_BITS)
			return cardproof_fail(err, err_size, CARDPROOF_UNSUPPORTED_KEY,
					      "card key is RSA-%d; RSA %d to %d bits is accepted",
					      bits, CARDPROOF_RSA_MIN_BITS, CARDPROOF_RSA_MAX_BITS);
		res->key_type = CARDPROOF_KEY_RSA;
		break;
	case EVP_PKEY_EC: {
		char group[64];
		size_t glen = 0;
		if (EVP_PKEY_get_group_name(key, group, sizeof group, &glen) != 1 ||
		    strcmp(group, SN_X9_62_prime256v1) != 0)
			return cardproof_fail(err, err_size, CARDPROOF_UNSUPPORTED_KEY,
					      "card key is on an EC curve other than P-256");
		res->key_type = CARDPROOF_KEY_EC_P256;
		break;
	}
	default:
		return cardproof_fail(err, err_size, CARDPROOF_UNSUPPORTED_KEY,
				      "card key type is not RSA or EC P-256");
	}
	res->key_bits = (unsigned)bits;
	uint32_t ku = X509_get_key_usage(cert);
	if (ku != UINT32_MAX && !(ku & KU_DIGITAL_SIGNATURE))
		return cardproof_fail(
		    err, err_size, CARDPROOF_UNSUPPORTED_KEY,
		    "card certificate key usage does not allow digital signatures");
	return CARDPROOF_OK;
}

/* The chain from cert to an anchor of ctx, valid at now. */
static int cardproof_chain(const struct cardproof_ctx *ctx, X509 *cert, time_t now, char *err,
			   size_t err_size)
{
	X509_STORE_CTX *sctx = X509_STORE_CTX_new();
	if (sctx == NULL || X509_STORE_CTX_init(sctx, ctx->store, cert, NULL) != 1) {
		X509_STORE_CTX_free(sctx);
		return cardproof_fail(err, err_size, CARDPROOF_ERROR,
				      "cannot set up certificate verification (out of memory?)");
	}
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(sctx), now);
	int ok = X509_verify_cert(sctx);
	int e = X509_STORE_CTX_get_error(sctx);
	int depth = X509_STORE_CTX_get_error_depth(sctx);
	X509_STORE_CTX_free(sctx);
	if (ok == 1)
		return CARDPROOF_OK;
	if (e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID)
		return cardproof_fail(err, err_size, CARDPROOF_EXPIRED,
				      "%s certificate is outside its validity period (%s)",
				      depth == 0 ? "the card" : "a card CA",
				      X509_verify_cert_error_string(e));
	return cardproof_fail(err, err_size, CARDPROOF_UNTRUSTED,
			      "the card certificate does not chain to a card_proof.ca "
			      "certificate: %s (depth %d)",
			      X509_verify_cert_error_string(e), depth);
}

static int cardproof_signature(const struct cardproof_ctx *ctx, EVP_PKEY *key,
			       const unsigned char *sig, size_t sig_len, const void *body,
			       size_t body_len, char *err, size_t err_size)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	if (mctx == NULL || EVP_DigestVerifyInit(mctx, &pctx, ctx->sha256, NULL, key) != 1 ||
	    (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA &&
	     EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)) {
		EVP_MD_CTX_free(mctx);
		return cardproof_fail(err, err_size, CARDPROOF_ERROR,
				      "cannot set up signature verification (out of memory?)");
	}
	int ok = EVP_DigestVerify(mctx, sig, sig_len, body, body_len);
	EVP_MD_CTX_free(mctx);
	if (ok != 1)
		return cardproof_fail(err, err_size, CARDPROOF_BAD_SIGNATURE,
				      "the Madoguchi-Card-Signature does not verify over the body "
				      "with the card's key");
	return CARDPROOF_OK;
}

int cardproof_verify(const struct cardproof_ctx *ctx, const char *cert_b64, const char *sig_b64,
		     const void *body, size_t body_len, time_t now, struct cardproof_result *out,
		     char *err, size_t err_size)
{
	struct cardproof_result res;
	memset(&res, 0, sizeof res);
	if (out != NULL)
		memset(out, 0, sizeof *out);
	if (ctx == NULL || (body == NULL && body_len > 0))
		return cardproof_fail(err, err_size, CARDPROOF_ERROR,
				      "card proof checked without a context or body");

	unsigned char *der = NULL, *sig = NULL;
	X509 *cert = NULL;
	long der_len =
	    cardproof_header(cert_b64, "Madoguchi-Card-Certificate", &der, err, err_size);
	long sig_len = der_len < 0 ? der_len
				   : cardproof_header(sig_b64, "Madoguchi-Card-Signature", &sig,
						      err, err_size);
	int rc = sig_len < 0 ? (int)sig_len : CARDPROOF_OK;
	if (rc == CARDPROOF_OK && sig_len > CARDPROOF_SIG_MAX)
		rc = cardproof_fail(err, err_size, CARDPROOF_MALFORMED,
				    "the Madoguchi-Card-Signature header is longer than any "
				    "supported signature");
	unsigned char sha[32];
	if (rc == CARDPROOF_OK &&
	    EVP_Digest(der, (size_t)der_len, sha, NULL, ctx->sha256, NULL) != 1)
		rc = cardproof_fail(err, err_size, CARDPROOF_ERROR, "SHA-256 failed");
	bool cached = false;
	if (rc == CARDPROOF_OK) {
		cert = cardproof_cache_get(ctx, sha, now, &res);
		cached = cert != NULL;
	}
	if (rc == CARDPROOF_OK && !cached) {
		const unsigned char *p = der;
		cert = d2i_X509(NULL, &p, der_len);
		if (cert == NULL || p != der + der_len)
			rc = cardproof_fail(err, err_size, CARDPROOF_MALFORMED,
					    "the Madoguchi-Card-Certificate header is not one DER "
					    "X.509 certificate");
	}
	if (rc == CARDPROOF_OK && !cached &&
	    cardproof_serial(cert, res.card_serial) != CARDPROOF_OK)
		rc = cardproof_fail(err, err_size, CARDPROOF_MALFORMED,
				    "the card certificate serial is negative or longer than 20 "
				    "octets");
	if (rc == CARDPROOF_OK && !cached && X509_check_ca(cert) != 0)
		rc = cardproof_fail(err, err_size, CARDPROOF_UNTRUSTED,
				    "the card certificate is a CA certificate, not a card's");
	EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
	if (rc == CARDPROOF_OK && !cached)
		rc = cardproof_key(cert, key, &res, err, err_size);
	if (rc == CARDPROOF_OK && !cached)
		rc = cardproof_chain(ctx, cert, now, err, err_size);
	if (rc == CARDPROOF_OK && !cached) {
		memcpy(res.cert_sha256, sha, sizeof sha);
		cardproof_cache_put(ctx, sha, cert, &res, now);
	}
	/* On every request, cached or not: a CRL can arrive after the card was first seen. */
	if (rc == CARDPROOF_OK)
		rc = cardproof_revocation(ctx, cert, err, err_size);
	if (rc == CARDPROOF_OK)
		rc = cardproof_signature(ctx, key, sig, (size_t)sig_len, body, body_len, err,
					 err_size);
	X509_free(cert);
	free(der);
	free(sig);
	if (rc == CARDPROOF_OK && out != NULL)
		*out = res;
	return rc;
}

bool cardproof_skew_ok(time_t requested_at, time_t now, long max_skew_seconds)
{
	if (max_skew_seconds < 0)
		return false;
	/* Differences in long long: both times are well inside +-2^62 in practice. */
	long long d = (long long)requested_at - (long long)now;
	if (d < 0)
		d = -d;
	return d <= max_skew_seconds;
}

const char *cardproof_status_name(int status)
{
	switch (status) {
	case CARDPROOF_OK:
		return "ok";
	case CARDPROOF_MISSING:
		return "missing";
	case CARDPROOF_MALFORMED:
		return "malformed";
	case CARDPROOF_UNTRUSTED:
		return "untrusted";
	case CARDPROOF_EXPIRED:
		return "expired";
	case CARDPROOF_BAD_SIGNATURE:
		return "bad signature";
	case CARDPROOF_UNSUPPORTED_KEY:
		return "unsupported key";
	case CARDPROOF_REVOKED:
		return "revoked";
	default:
		return "error";
	}
}
