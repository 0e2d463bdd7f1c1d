/*
 * cardproof.h: the resident's card proof on an issuance request (DESIGN §2, §3 step 4, §4).
 *
 * A request carries two headers:
 *
 *   Madoguchi-Card-Certificate  base64 (standard alphabet, padded, no line breaks) of the DER
 *                               card user certificate
 *   Madoguchi-Card-Signature    base64 of the signature by that certificate's key over the
 *                               exact body bytes: RSA PKCS#1 v1.5 with SHA-256 (RSA 2048..4096
 *                               bits) or ECDSA P-256 with SHA-256 (DER Ecdsa-Sig-Value)
 *
 * cardproof_verify() accepts the proof when the certificate chains to a configured card CA at
 * the given time (every certificate of the chain within its validity), is not itself a CA, has
 * a supported key whose key usage (if stated) allows digital signatures, and the signature
 * verifies.  Every configured CA certificate is a trust anchor on its own (partial chains
 * allowed), so card_proof.ca may hold a root, an issuing CA, or both.  With CRLs loaded
 * (cardproof_load_crl()), a card certificate listed as revoked by its issuer's CRL is refused
 * on every request, also when the certificate itself was verified before (the cache).
 *
 * Every failure is 401 CARD_PROOF_INVALID on the wire; the status and the message tell tests
 * and operators which check failed.  Messages never contain the card serial or header values.
 *
 * Threads: a cardproof_ctx may be used by any number of threads at once; each call makes its
 * own verification context.  Only its CRL set changes after cardproof_ctx_new(), replaced
 * whole under a lock by cardproof_load_crl().
 */
#ifndef MDG_CARDPROOF_H
#define MDG_CARDPROOF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CARDPROOF_SERIAL_MAX   40    /* hex digits of a card serial (RFC 5280: 20 octets) */
#define CARDPROOF_HEADER_MAX   16384 /* base64 characters accepted in either header */
#define CARDPROOF_RSA_MIN_BITS 2048
#define CARDPROOF_RSA_MAX_BITS 4096 /* larger keys only cost verification time */

enum cardproof_status {
	CARDPROOF_OK = 0,
	CARDPROOF_MISSING = -1,		/* a header is absent or empty */
	CARDPROOF_MALFORMED = -2,	/* bad base64, certificate not DER X.509, bad serial */
	CARDPROOF_UNTRUSTED = -3,	/* does not chain to a card CA, or is a CA itself */
	CARDPROOF_EXPIRED = -4,		/* chains, but outside a validity period at `now` */
	CARDPROOF_BAD_SIGNATURE = -5,	/* the signature does not verify over the body */
	CARDPROOF_UNSUPPORTED_KEY = -6, /* not RSA 2048..4096 / EC P-256, or not for signing */
	CARDPROOF_ERROR = -7,		/* CA file unusable, out of memory, OpenSSL failure */
	CARDPROOF_REVOKED = -8,		/* listed in its issuer's CRL */
};

enum cardproof_key_type {
	CARDPROOF_KEY_RSA = 1,
	CARDPROOF_KEY_EC_P256 = 2,
};

/* What a verified proof says about the card. */
struct cardproof_result {
	/* The certificate's serial, upper-case hex without leading zeros ("0" for zero): the
	 * card_serial of DESIGN §4 and the linkage key.  Personal data: never log it. */
	char card_serial[CARDPROOF_SERIAL_MAX + 1];
	unsigned char cert_sha256[32]; /* SHA-256 of the certificate DER ("the same card") */
	enum cardproof_key_type key_type;
	unsigned key_bits;
	time_t not_after; /* end of the card certificate's validity */
};

struct cardproof_ctx;

/*
 * Loads the card CA certificates (one PEM file, one or more certificates, each a CA) into a
 * new context.  Returns CARDPROOF_OK with *out (free with cardproof_ctx_free), or
 * CARDPROOF_ERROR with err saying what to fix in which file.
 */
int cardproof_ctx_new(const char *ca_pem_path, struct cardproof_ctx **out, char *err,
		      size_t err_size);
void cardproof_ctx_free(struct cardproof_ctx *ctx);
/* Number of CA certificates loaded. */
size_t cardproof_ctx_ca_count(const struct cardproof_ctx *ctx);

/*
 * Loads the CRLs of a PEM file (one or more X509 CRL blocks; an empty list is not a file of
 * CRLs) and, when every one is signed by a configured card CA, makes them the set that
 * cardproof_verify() consults, replacing the previous set whole.  On any error the previous
 * set stays in force (a broken or missing file never lifts a revocation).  Returns
 * CARDPROOF_OK with *crls and *revoked (may be NULL) counted, or CARDPROOF_ERROR with err
 * saying what to fix.  Parses the whole file: call it off the event loop.  Any thread.
 */
int cardproof_load_crl(struct cardproof_ctx *ctx, const char *path, size_t *crls, size_t *revoked,
		       char *err, size_t err_size);

/* Lookups of the verified-certificate cache so far (see cardproof.c).  Any thread. */
void cardproof_cache_stats(const struct cardproof_ctx *ctx, uint64_t *hits, uint64_t *misses);

/*
 * Verifies the proof of one request.  cert_b64 and sig_b64 are the header values (NULL when
 * absent; surrounding spaces and tabs are ignored), body the exact request body.  now is the
 * time at which the chain must be valid.  Returns CARDPROOF_OK with *out filled, or a
 * negative status with err filled and *out zeroed.  out may be NULL.
 *
 * Cost: a DER parse, one CA signature check, one card signature check; no file access and no
 * CA parsing; about 0.2-0.3 ms of CPU with OpenSSL 3.0 (figures in cardproof.c), so call it
 * off the event loop.  A certificate is valid from notBefore up to the second before notAfter
 * (OpenSSL's reading).
 */
int cardproof_verify(const struct cardproof_ctx *ctx, const char *cert_b64, const char *sig_b64,
		     const void *body, size_t body_len, time_t now, struct cardproof_result *out,
		     char *err, size_t err_size);

/* True when |requested_at - now| <= max_skew_seconds (max_skew_seconds >= 0). */
bool cardproof_skew_ok(time_t requested_at, time_t now, long max_skew_seconds);

/* A short name for a status ("untrusted", "bad signature", …) for metrics and logs. */
const char *cardproof_status_name(int status);

#endif
