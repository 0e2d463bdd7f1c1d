/*
 * test_cardproof.c: the card proof of an issuance request (core/cardproof.c).
 *
 * The test makes its own throwaway PKI with OpenSSL's C API: a P-256 card CA (written to a
 * temporary PEM file, as card_proof.ca), an RSA-2048 and a P-256 card under it, an expired card,
 * a card from another CA, cards with unsupported keys (RSA-1024, P-384, Ed25519, key usage
 * without digitalSignature), an intermediate CA and its card.  What must hold: valid RSA and
 * ECDSA proofs pass and give the serial as upper-case hex without leading zeros; one changed
 * body byte, another card's signature, an RSA-PSS signature fail as BAD_SIGNATURE; another
 * CA, a CA certificate as card fail as UNTRUSTED; an expired card fails as EXPIRED but passes
 * with `now` inside its validity; garbage base64 or DER fail as MALFORMED; unsupported keys
 * fail as UNSUPPORTED_KEY; no error text contains the card serial; threads share a context.
 * The bench case prints the cost of one verification (TAP comment).  Environment: TMPDIR.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, setenv, clock_gettime */
#endif
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cardproof.h"

#define NOW  ((time_t)1795770000) /* 2026-11-27T09:00:00Z */
#define YEAR ((time_t)365 * 86400)

static const char body[] =
    "{\"request_id\": \"4b0e7a52-8f5e-4d1c-9a51-3f2f1c9a7e10\", \"requested_at\": "
    "\"2026-11-27T09:00:00Z\", \"municipality\": \"141003\", \"certificate\": \"residence\", "
    "\"terminal\": {\"operator\": \"chain-a\", \"store\": \"012345\", \"kiosk\": \"01\"}}";

/* A card: its key and its certificate as the header carries it. */
struct card {
	EVP_PKEY *key;
	X509 *cert;
	char *cert_b64;
};

static EVP_PKEY *ca_key, *other_ca_key, *inter_key;
static X509 *ca_cert, *other_ca_cert, *inter_cert;
static struct card rsa_card, ec_card, expired_card, foreign_card, rsa1024_card, p384_card,
    ed25519_card, nosign_card, inter_card, zero_card, long_card, negative_card, outliving_card;
static char ca_path[256], both_path[256], inter_path[256];
static struct cardproof_ctx *ctx;

static char *b64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
		abort();
	X509_EXTENSION_free(ext);
}

/*
 * A certificate for key with serial (hex, "-" for negative), signed by issuer_key (issuer NULL:
 * self-signed), valid [nb, na].  usage NULL: digitalSignature for a leaf.
 */
static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *serial,
		       time_t nb, time_t na, int ca, const char *usage)
{
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	if (x == NULL || BN_hex2bn(&bn, serial) == 0)
		abort();
	X509_set_version(x, 2);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_NAME *name = X509_NAME_new();
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)(ca ? "test card CA" : "test card"), -1,
				   -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_NAME_free(name);
	ASN1_TIME_set(X509_getm_notBefore(x), nb);
	ASN1_TIME_set(X509_getm_notAfter(x), na);
	X509_set_pubkey(x, key);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	add_ext(x, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	add_ext(x, &v3, NID_key_usage,
		ca ? "critical,keyCertSign,cRLSign"
		   : (usage ? usage : "critical,digitalSignature"));
	add_ext(x, &v3, NID_subject_key_identifier, "hash");
	if (issuer != NULL)
		add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
	if (X509_sign(x, issuer_key,
		      EVP_PKEY_get_base_id(issuer_key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) ==
	    0)
		abort();
	return x;
}

static void make_card(struct card *c, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
		      const char *serial, time_t nb, time_t na, const char *usage)
{
	c->key = key;
	c->cert = make_cert(key, issuer, issuer_key, serial, nb, na, 0, usage);
	unsigned char *der = NULL;
	int n = i2d_X509(c->cert, &der);
	if (n <= 0)
		abort();
	c->cert_b64 = b64(der, (size_t)n);
	OPENSSL_free(der);
}

static void free_card(struct card *c)
{
	EVP_PKEY_free(c->key);
	X509_free(c->cert);
	free(c->cert_b64);
}

/* base64 signature by key over data; pss selects RSA-PSS padding.  Caller frees. */
static char *sign(EVP_PKEY *key, const void *data, size_t n, int pss)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_PKEY_CTX *p = NULL;
	unsigned char sig[1024];
	size_t len = sizeof sig;
	int ed = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
	if (EVP_DigestSignInit(m, &p, ed ? NULL : EVP_sha256(), NULL, key) != 1 ||
	    (pss && EVP_PKEY_CTX_set_rsa_padding(p, RSA_PKCS1_PSS_PADDING) <= 0) ||
	    EVP_DigestSign(m, sig, &len, data, n) != 1)
		abort();
	EVP_MD_CTX_free(m);
	return b64(sig, len);
}

static void write_pem(char *path, size_t size, const char *tag, X509 *a, X509 *b)
{
	const char *dir = getenv("TMPDIR");
	snprintf(path, size, "%s/test_cardproof_%s_XXXXXX", dir && dir[0] ? dir : "/tmp", tag);
	int fd = mkstemp(path);
	if (fd < 0)
		abort();
	FILE *f = fdopen(fd, "w");
	if (f == NULL || PEM_write_X509(f, a) != 1 || (b != NULL && PEM_write_X509(f, b) != 1))
		abort();
	fclose(f);
}

static int group_setup(void **state)
{
	(void)state;
	ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	other_ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	inter_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ca_cert = make_cert(ca_key, NULL, ca_key, "01", NOW - 5 * YEAR, NOW + 10 * YEAR, 1, NULL);
	other_ca_cert = make_cert(other_ca_key, NULL, other_ca_key, "0E", NOW - 5 * YEAR,
				  NOW + 10 * YEAR, 1, NULL);
	inter_cert =
	    make_cert(inter_key, ca_cert, ca_key, "02", NOW - 5 * YEAR, NOW + 10 * YEAR, 1, NULL);
	time_t nb = NOW - YEAR, na = NOW + 4 * YEAR;
	make_card(&rsa_card, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), ca_cert, ca_key,
		  "01A2B3C4D5", nb, na, NULL);
	make_card(&ec_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key, "0F00D",
		  nb, na, NULL);
	make_card(&expired_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key,
		  "E0", NOW - 3 * YEAR, NOW - YEAR, NULL);
	make_card(&foreign_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), other_ca_cert,
		  other_ca_key, "F0", nb, na, NULL);
	make_card(&rsa1024_card, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), ca_cert,
		  ca_key, "A1", nb, na, NULL);
	make_card(&p384_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), ca_cert, ca_key, "A2",
		  nb, na, NULL);
	make_card(&ed25519_card, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), ca_cert, ca_key, "A3",
		  nb, na, NULL);
	make_card(&nosign_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key, "A4",
		  nb, na, "critical,keyEncipherment");
	make_card(&inter_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), inter_cert, inter_key,
		  "B1", nb, na, NULL);
	make_card(&zero_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key, "0",
		  nb, na, NULL);
	make_card(&long_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key,
		  "8000000000000000000000000000000000000001", nb, na, NULL);
	make_card(&negative_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key,
		  "-5", nb, na, NULL);
	make_card(&outliving_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ca_cert, ca_key,
		  "C1", nb, NOW + 20 * YEAR, NULL);
	write_pem(ca_path, sizeof ca_path, "ca", ca_cert, NULL);
	write_pem(both_path, sizeof both_path, "both", ca_cert, other_ca_cert);
	write_pem(inter_path, sizeof inter_path, "inter", inter_cert, NULL);
	char err[256];
	return cardproof_ctx_new(ca_path, &ctx, err, sizeof err) == CARDPROOF_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	cardproof_ctx_free(ctx);
	struct card *cards[] = {&rsa_card,	&ec_card,   &expired_card, &foreign_card,
				&rsa1024_card,	&p384_card, &ed25519_card, &nosign_card,
				&inter_card,	&zero_card, &long_card,	   &negative_card,
				&outliving_card};
	for (size_t i = 0; i < sizeof cards / sizeof cards[0]; i++)
		free_card(cards[i]);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_ca_key);
	EVP_PKEY_free(inter_key);
	X509_free(ca_cert);
	X509_free(other_ca_cert);
	X509_free(inter_cert);
	unlink(ca_path);
	unlink(both_path);
	unlink(inter_path);
	return 0;
}

/* Verifies body signed by signer with card's certificate at now; err must not hold serial. */
static int verify_with(const struct cardproof_ctx *c, const struct card *card, EVP_PKEY *signer,
		       const void *data, size_t n, time_t now, struct cardproof_result *res)
{
	char *sig = sign(signer, data, n, 0);
	char err[256] = "";
	int rc = cardproof_verify(c, card->cert_b64, sig, data, n, now, res, err, sizeof err);
	free(sig);
	if (rc != CARDPROOF_OK) {
		assert_true(err[0] != '\0');
		assert_null(strstr(err, "A2B3C4D5"));
		assert_null(strstr(err, "F00D"));
	}
	return rc;
}

static int verify_card(const struct card *card, time_t now, struct cardproof_result *res)
{
	return verify_with(ctx, card, card->key, body, sizeof body - 1, now, res);
}

static void a_valid_rsa_proof_passes_with_the_serial_in_canonical_hex(void **state)
{
	(void)state;
	struct cardproof_result res;
	assert_int_equal(verify_card(&rsa_card, NOW, &res), CARDPROOF_OK);
	assert_string_equal(res.card_serial, "1A2B3C4D5");
	assert_int_equal(res.key_type, CARDPROOF_KEY_RSA);
	assert_int_equal(res.key_bits, 2048);
	unsigned char *der = NULL, md[32];
	int n = i2d_X509(rsa_card.cert, &der);
	assert_int_equal(EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL), 1);
	OPENSSL_free(der);
	assert_memory_equal(res.cert_sha256, md, 32);
}

static void a_valid_ecdsa_proof_passes_with_the_serial_in_canonical_hex(void **state)
{
	(void)state;
	struct cardproof_result res;
	assert_int_equal(verify_card(&ec_card, NOW, &res), CARDPROOF_OK);
	assert_string_equal(res.card_serial, "F00D");
	assert_int_equal(res.key_type, CARDPROOF_KEY_EC_P256);
	assert_int_equal(res.key_bits, 256);
	assert_int_equal(verify_card(&zero_card, NOW, &res), CARDPROOF_OK);
	assert_string_equal(res.card_serial, "0");
	assert_int_equal(verify_card(&long_card, NOW, &res), CARDPROOF_OK);
	assert_string_equal(res.card_serial, "8000000000000000000000000000000000000001");
	/* A negative serial has no card_serial spelling. */
	assert_int_equal(verify_card(&negative_card, NOW, &res), CARDPROOF_MALFORMED);
	assert_string_equal(res.card_serial, "");
}

static void one_changed_body_byte_fails(void **state)
{
	(void)state;
	const struct card *cards[] = {&rsa_card, &ec_card};
	for (int c = 0; c < 2; c++) {
		char *sig = sign(cards[c]->key, body, sizeof body - 1, 0);
		size_t positions[] = {0, 40, sizeof body - 2};
		for (int i = 0; i < 3; i++) {
			char copy[sizeof body];
			memcpy(copy, body, sizeof body);
			copy[positions[i]] ^= 1;
			char err[256];
			assert_int_equal(cardproof_verify(ctx, cards[c]->cert_b64, sig, copy,
							  sizeof body - 1, NOW, NULL, err,
							  sizeof err),
					 CARDPROOF_BAD_SIGNATURE);
		}
		char err[256];
		/* One byte short, one byte more (the NUL). */
		assert_int_equal(cardproof_verify(ctx, cards[c]->cert_b64, sig, body,
						  sizeof body - 2, NOW, NULL, err, sizeof err),
				 CARDPROOF_BAD_SIGNATURE);
		assert_int_equal(cardproof_verify(ctx, cards[c]->cert_b64, sig, body, sizeof body,
						  NOW, NULL, err, sizeof err),
				 CARDPROOF_BAD_SIGNATURE);
		assert_int_equal(cardproof_verify(ctx, cards[c]->cert_b64, sig, body,
						  sizeof body - 1, NOW, NULL, err, sizeof err),
				 CARDPROOF_OK);
		free(sig);
	}
}

static void a_signature_by_another_card_fails(void **state)
{
	(void)state;
	struct cardproof_result res;
	assert_int_equal(verify_with(ctx, &rsa_card, ec_card.key, body, sizeof body - 1, NOW, &res),
			 CARDPROOF_BAD_SIGNATURE);
	assert_string_equal(res.card_serial, "");
	assert_int_equal(
	    verify_with(ctx, &ec_card, zero_card.key, body, sizeof body - 1, NOW, &res),
	    CARDPROOF_BAD_SIGNATURE);
	/* The RSA card's own key, but PSS instead of PKCS#1 v1.5. */
	char *sig = sign(rsa_card.key, body, sizeof body - 1, 1);
	char err[256];
	assert_int_equal(cardproof_verify(ctx, rsa_card.cert_b64, sig, body, sizeof body - 1, NOW,
					  NULL, err, sizeof err),
			 CARDPROOF_BAD_SIGNATURE);
	free(sig);
}

static void a_card_of_another_ca_is_untrusted(void **state)
{
	(void)state;
	assert_int_equal(verify_card(&foreign_card, NOW, NULL), CARDPROOF_UNTRUSTED);
	/* Trusted once its CA is configured too: every certificate of the file is an anchor. */
	struct cardproof_ctx *both;
	char err[256];
	assert_int_equal(cardproof_ctx_new(both_path, &both, err, sizeof err), CARDPROOF_OK);
	assert_int_equal(cardproof_ctx_ca_count(both), 2);
	assert_int_equal(
	    verify_with(both, &foreign_card, foreign_card.key, body, sizeof body - 1, NOW, NULL),
	    CARDPROOF_OK);
	assert_int_equal(verify_with(both, &ec_card, ec_card.key, body, sizeof body - 1, NOW, NULL),
			 CARDPROOF_OK);
	cardproof_ctx_free(both);
}

static void a_card_under_an_intermediate_needs_that_intermediate_configured(void **state)
{
	(void)state;
	/* Only the card is sent, so the root alone cannot complete the chain. */
	assert_int_equal(verify_card(&inter_card, NOW, NULL), CARDPROOF_UNTRUSTED);
	struct cardproof_ctx *inter;
	char err[256];
	assert_int_equal(cardproof_ctx_new(inter_path, &inter, err, sizeof err), CARDPROOF_OK);
	assert_int_equal(
	    verify_with(inter, &inter_card, inter_card.key, body, sizeof body - 1, NOW, NULL),
	    CARDPROOF_OK);
	assert_int_equal(
	    verify_with(inter, &ec_card, ec_card.key, body, sizeof body - 1, NOW, NULL),
	    CARDPROOF_UNTRUSTED);
	cardproof_ctx_free(inter);
}

static void a_ca_certificate_is_not_a_card(void **state)
{
	(void)state;
	struct card as_card = {.key = ca_key, .cert = ca_cert};
	unsigned char *der = NULL;
	int n = i2d_X509(ca_cert, &der);
	as_card.cert_b64 = b64(der, (size_t)n);
	OPENSSL_free(der);
	assert_int_equal(verify_card(&as_card, NOW, NULL), CARDPROOF_UNTRUSTED);
	free(as_card.cert_b64);
}

static void an_expired_card_fails_but_passes_inside_its_validity(void **state)
{
	(void)state;
	struct cardproof_result res;
	assert_int_equal(verify_card(&expired_card, NOW, &res), CARDPROOF_EXPIRED);
	assert_int_equal(verify_card(&expired_card, NOW - 2 * YEAR, &res), CARDPROOF_OK);
	assert_string_equal(res.card_serial, "E0");
	/* Up to the second before notAfter (OpenSSL counts notAfter itself as expired); a card
	 * before its notBefore is refused the same way. */
	assert_int_equal(verify_card(&expired_card, NOW - YEAR - 1, &res), CARDPROOF_OK);
	assert_int_equal(verify_card(&expired_card, NOW - YEAR + 1, &res), CARDPROOF_EXPIRED);
	assert_int_equal(verify_card(&ec_card, NOW - YEAR - 1, &res), CARDPROOF_EXPIRED);
	/* The CA's own validity counts too: this card outlives its CA. */
	assert_int_equal(verify_card(&outliving_card, NOW + 9 * YEAR, &res), CARDPROOF_OK);
	assert_int_equal(verify_card(&outliving_card, NOW + 11 * YEAR, &res), CARDPROOF_EXPIRED);
}

static void a_cached_card_still_has_every_signature_checked(void **state)
{
	(void)state;
	struct cardproof_result res;
	uint64_t hits0, misses0, hits1, misses1;
	cardproof_cache_stats(ctx, &hits0, &misses0);
	assert_int_equal(verify_card(&ec_card, NOW, &res), CARDPROOF_OK);
	assert_int_equal(verify_card(&ec_card, NOW + 1, &res), CARDPROOF_OK);
	assert_string_equal(res.card_serial, "F00D");
	cardproof_cache_stats(ctx, &hits1, &misses1);
	assert_true(hits1 > hits0);
	/* Served from the cache, the body's signature is still checked. */
	char *sig = sign(ec_card.key, body, sizeof body - 1, 0);
	char copy[sizeof body], err[256];
	memcpy(copy, body, sizeof body);
	copy[3] ^= 1;
	assert_int_equal(cardproof_verify(ctx, ec_card.cert_b64, sig, copy, sizeof body - 1,
					  NOW + 2, NULL, err, sizeof err),
			 CARDPROOF_BAD_SIGNATURE);
	free(sig);
	/* Another card's key with this card's certificate fails as well. */
	assert_int_equal(
	    verify_with(ctx, &ec_card, rsa_card.key, body, sizeof body - 1, NOW + 3, &res),
	    CARDPROOF_BAD_SIGNATURE);
}

/* Writes a CRL by issuer (signed with key) revoking the given serials (hex), to a temp file. */
static void write_crl(char *path, size_t size, X509 *issuer, EVP_PKEY *key,
		      const char *const *serials)
{
	X509_CRL *crl = X509_CRL_new();
	assert_non_null(crl);
	assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)), 1);
	ASN1_TIME *t = ASN1_TIME_set(NULL, NOW - 3600);
	ASN1_TIME *next = ASN1_TIME_set(NULL, NOW + 86400);
	X509_CRL_set1_lastUpdate(crl, t);
	X509_CRL_set1_nextUpdate(crl, next);
	for (size_t i = 0; serials[i] != NULL; i++) {
		X509_REVOKED *r = X509_REVOKED_new();
		BIGNUM *bn = NULL;
		assert_true(BN_hex2bn(&bn, serials[i]) > 0);
		ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
		X509_REVOKED_set_serialNumber(r, ai);
		X509_REVOKED_set_revocationDate(r, t);
		assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
		ASN1_INTEGER_free(ai);
		BN_free(bn);
	}
	X509_CRL_sort(crl);
	assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
	const char *dir = getenv("TMPDIR");
	snprintf(path, size, "%s/test_cardproof_crl_XXXXXX", dir && dir[0] ? dir : "/tmp");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509_CRL(f, crl), 1);
	fclose(f);
	ASN1_TIME_free(t);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
}

static void a_revoked_card_is_refused_also_when_cached_and_a_bad_crl_changes_nothing(void **state)
{
	(void)state;
	struct cardproof_ctx *c;
	char err[256], good[256], foreign[256], none[256];
	assert_int_equal(cardproof_ctx_new(ca_path, &c, err, sizeof err), CARDPROOF_OK);
	struct cardproof_result res;
	/* Seen and cached before any CRL. */
	assert_int_equal(verify_with(c, &ec_card, ec_card.key, body, sizeof body - 1, NOW, &res),
			 CARDPROOF_OK);
	const char *const revoked[] = {"0F00D", "77", NULL};
	write_crl(good, sizeof good, ca_cert, ca_key, revoked);
	size_t n = 0, listed = 0;
	assert_int_equal(cardproof_load_crl(c, good, &n, &listed, err, sizeof err), CARDPROOF_OK);
	assert_int_equal(n, 1);
	assert_int_equal(listed, 2);
	assert_int_equal(verify_with(c, &ec_card, ec_card.key, body, sizeof body - 1, NOW, &res),
			 CARDPROOF_REVOKED);
	assert_int_equal(verify_with(c, &rsa_card, rsa_card.key, body, sizeof body - 1, NOW, &res),
			 CARDPROOF_OK);
	/* A CRL signed by a CA nobody configured, or a file without a CRL, is refused and the
	 * CRL in force stays: the card remains revoked. */
	write_crl(foreign, sizeof foreign, ca_cert, other_ca_key, revoked);
	assert_int_equal(cardproof_load_crl(c, foreign, NULL, NULL, err, sizeof err),
			 CARDPROOF_ERROR);
	assert_non_null(strstr(err, "not signed by a card_proof.ca certificate"));
	assert_int_equal(cardproof_load_crl(c, ca_path, NULL, NULL, err, sizeof err),
			 CARDPROOF_ERROR);
	assert_non_null(strstr(err, "no PEM X509 CRL"));
	assert_int_equal(verify_with(c, &ec_card, ec_card.key, body, sizeof body - 1, NOW, &res),
			 CARDPROOF_REVOKED);
	/* A new CRL without the card lifts it. */
	const char *const nothing[] = {"77", NULL};
	write_crl(none, sizeof none, ca_cert, ca_key, nothing);
	assert_int_equal(cardproof_load_crl(c, none, &n, &listed, err, sizeof err), CARDPROOF_OK);
	assert_int_equal(listed, 1);
	assert_int_equal(verify_with(c, &ec_card, ec_card.key, body, sizeof body - 1, NOW, &res),
			 CARDPROOF_OK);
	assert_string_equal(cardproof_status_name(CARDPROOF_REVOKED), "revoked");
	unlink(good);
	unlink(foreign);
	unlink(none);
	cardproof_ctx_free(c);
}

static void missing_headers_fail_as_missing(void **state)
{
	(void)state;
	char *sig = sign(ec_card.key, body, sizeof body - 1, 0);
	char err[256];
	const char *empty[] = {NULL, "", "  \t "};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(cardproof_verify(ctx, empty[i], sig, body, sizeof body - 1, NOW,
						  NULL, err, sizeof err),
				 CARDPROOF_MISSING);
		assert_non_null(strstr(err, "Madoguchi-Card-Certificate"));
		assert_int_equal(cardproof_verify(ctx, ec_card.cert_b64, empty[i], body,
						  sizeof body - 1, NOW, NULL, err, sizeof err),
				 CARDPROOF_MISSING);
		assert_non_null(strstr(err, "Madoguchi-Card-Signature"));
	}
	/* Surrounding blanks are not part of a header value. */
	char padded[8192];
	snprintf(padded, sizeof padded, " \t%s ", ec_card.cert_b64);
	assert_int_equal(
	    cardproof_verify(ctx, padded, sig, body, sizeof body - 1, NOW, NULL, err, sizeof err),
	    CARDPROOF_OK);
	free(sig);
}

static void garbage_base64_or_der_fails_as_malformed(void **state)
{
	(void)state;
	char *sig = sign(ec_card.key, body, sizeof body - 1, 0);
	char err[256];
	size_t n = strlen(ec_card.cert_b64);
	char *broken = malloc(n + 16);
	assert_non_null(broken);
	const char *garbage[] = {"!!!!", "QUJD", "QUI", "QUJ=", "QQ=A", "====", "QUJD\n"};
	for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
		assert_int_equal(cardproof_verify(ctx, garbage[i], sig, body, sizeof body - 1, NOW,
						  NULL, err, sizeof err),
				 CARDPROOF_MALFORMED);
	/* A line break inside, a character changed to one outside the alphabet. */
	snprintf(broken, n + 16, "%.*s\n%s", 64, ec_card.cert_b64, ec_card.cert_b64 + 64);
	assert_int_equal(
	    cardproof_verify(ctx, broken, sig, body, sizeof body - 1, NOW, NULL, err, sizeof err),
	    CARDPROOF_MALFORMED);
	snprintf(broken, n + 16, "%s", ec_card.cert_b64);
	broken[10] = '-';
	assert_int_equal(
	    cardproof_verify(ctx, broken, sig, body, sizeof body - 1, NOW, NULL, err, sizeof err),
	    CARDPROOF_MALFORMED);
	/* Truncated DER, and DER with trailing bytes. */
	snprintf(broken, n + 16, "%.*s", (int)(n - 8), ec_card.cert_b64);
	assert_int_equal(
	    cardproof_verify(ctx, broken, sig, body, sizeof body - 1, NOW, NULL, err, sizeof err),
	    CARDPROOF_MALFORMED);
	unsigned char *der = NULL;
	int dn = i2d_X509(ec_card.cert, &der);
	unsigned char *longer = malloc((size_t)dn + 3);
	assert_non_null(longer);
	memcpy(longer, der, (size_t)dn);
	memcpy(longer + dn, "\0\0\0", 3);
	char *longer_b64 = b64(longer, (size_t)dn + 3);
	assert_int_equal(cardproof_verify(ctx, longer_b64, sig, body, sizeof body - 1, NOW, NULL,
					  err, sizeof err),
			 CARDPROOF_MALFORMED);
	free(longer_b64);
	free(longer);
	OPENSSL_free(der);
	/* A garbage signature header. */
	assert_int_equal(cardproof_verify(ctx, ec_card.cert_b64, "%%%%", body, sizeof body - 1, NOW,
					  NULL, err, sizeof err),
			 CARDPROOF_MALFORMED);
	/* Well-formed base64 but not a signature: it just does not verify. */
	assert_int_equal(cardproof_verify(ctx, ec_card.cert_b64, "QUJD", body, sizeof body - 1, NOW,
					  NULL, err, sizeof err),
			 CARDPROOF_BAD_SIGNATURE);
	free(broken);
	free(sig);
}

static void unsupported_keys_fail_as_unsupported(void **state)
{
	(void)state;
	assert_int_equal(verify_card(&rsa1024_card, NOW, NULL), CARDPROOF_UNSUPPORTED_KEY);
	assert_int_equal(verify_card(&p384_card, NOW, NULL), CARDPROOF_UNSUPPORTED_KEY);
	assert_int_equal(verify_card(&ed25519_card, NOW, NULL), CARDPROOF_UNSUPPORTED_KEY);
	assert_int_equal(verify_card(&nosign_card, NOW, NULL), CARDPROOF_UNSUPPORTED_KEY);
}

static void a_bad_ca_file_is_refused_with_a_reason(void **state)
{
	(void)state;
	struct cardproof_ctx *c = (struct cardproof_ctx *)1;
	char err[256];
	assert_int_equal(cardproof_ctx_new("/nonexistent/card-ca.pem", &c, err, sizeof err),
			 CARDPROOF_ERROR);
	assert_null(c);
	assert_non_null(strstr(err, "/nonexistent/card-ca.pem"));
	assert_int_equal(cardproof_ctx_new("", &c, err, sizeof err), CARDPROOF_ERROR);

	char path[256];
	const char *dir = getenv("TMPDIR");
	snprintf(path, sizeof path, "%s/test_cardproof_bad_XXXXXX", dir && dir[0] ? dir : "/tmp");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	fputs("not a certificate\n", f);
	fclose(f);
	assert_int_equal(cardproof_ctx_new(path, &c, err, sizeof err), CARDPROOF_ERROR);
	assert_non_null(strstr(err, "no PEM certificate"));

	f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_X509(f, ca_cert);
	PEM_write_X509(f, ec_card.cert);
	fclose(f);
	assert_int_equal(cardproof_ctx_new(path, &c, err, sizeof err), CARDPROOF_ERROR);
	assert_non_null(strstr(err, "certificate 2"));
	assert_non_null(strstr(err, "not a CA"));

	f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_X509(f, ca_cert);
	fputs("-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", f);
	fclose(f);
	assert_int_equal(cardproof_ctx_new(path, &c, err, sizeof err), CARDPROOF_ERROR);
	assert_null(c);
	unlink(path);
}

static void skew_is_checked_both_ways_inclusively(void **state)
{
	(void)state;
	assert_true(cardproof_skew_ok(NOW, NOW, 0));
	assert_true(cardproof_skew_ok(NOW - 300, NOW, 300));
	assert_true(cardproof_skew_ok(NOW + 300, NOW, 300));
	assert_false(cardproof_skew_ok(NOW - 301, NOW, 300));
	assert_false(cardproof_skew_ok(NOW + 301, NOW, 300));
	assert_false(cardproof_skew_ok(NOW, NOW, -1));
	assert_false(cardproof_skew_ok(0, NOW, 300));
}

static void *verify_thread_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		const struct card *card = i % 2 ? &rsa_card : &ec_card;
		char *sig = sign(card->key, body, sizeof body - 1, 0);
		struct cardproof_result res;
		char err[256];
		int rc = cardproof_verify(ctx, card->cert_b64, sig, body, sizeof body - 1, NOW,
					  &res, err, sizeof err);
		free(sig);
		if (rc != CARDPROOF_OK ||
		    strcmp(res.card_serial, i % 2 ? "1A2B3C4D5" : "F00D") != 0)
			return (void *)1;
		if (cardproof_verify(ctx, foreign_card.cert_b64, "QUJD", body, sizeof body - 1, NOW,
				     NULL, err, sizeof err) != CARDPROOF_UNTRUSTED)
			return (void *)1;
	}
	return NULL;
}

static void threads_share_one_context(void **state)
{
	(void)state;
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, verify_thread_main, NULL), 0);
	for (int i = 0; i < 4; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		assert_null(bad);
	}
}

static double bench(const struct card *card, int rounds)
{
	char *sig = sign(card->key, body, sizeof body - 1, 0);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < rounds; i++) {
		char err[256];
		if (cardproof_verify(ctx, card->cert_b64, sig, body, sizeof body - 1, NOW, NULL,
				     err, sizeof err) != CARDPROOF_OK)
			abort();
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	free(sig);
	return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / rounds /
	       1e3;
}

static void bench_one_verification(void **state)
{
	(void)state;
	int rounds = 300;
	double rsa = bench(&rsa_card, rounds), ec = bench(&ec_card, rounds);
	printf("# cardproof_verify: RSA-2048 card %.1f us, P-256 card %.1f us (P-256 CA, %d "
	       "rounds)\n",
	       rsa, ec, rounds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_valid_rsa_proof_passes_with_the_serial_in_canonical_hex),
	    cmocka_unit_test(a_valid_ecdsa_proof_passes_with_the_serial_in_canonical_hex),
	    cmocka_unit_test(one_changed_body_byte_fails),
	    cmocka_unit_test(a_signature_by_another_card_fails),
	    cmocka_unit_test(a_card_of_another_ca_is_untrusted),
	    cmocka_unit_test(a_card_under_an_intermediate_needs_that_intermediate_configured),
	    cmocka_unit_test(a_ca_certificate_is_not_a_card),
	    cmocka_unit_test(an_expired_card_fails_but_passes_inside_its_validity),
	    cmocka_unit_test(a_cached_card_still_has_every_signature_checked),
	    cmocka_unit_test(
		a_revoked_card_is_refused_also_when_cached_and_a_bad_crl_changes_nothing),
	    cmocka_unit_test(missing_headers_fail_as_missing),
	    cmocka_unit_test(garbage_base64_or_der_fails_as_malformed),
	    cmocka_unit_test(unsupported_keys_fail_as_unsupported),
	    cmocka_unit_test(a_bad_ca_file_is_refused_with_a_reason),
	    cmocka_unit_test(skew_is_checked_both_ways_inclusively),
	    cmocka_unit_test(threads_share_one_context),
	    cmocka_unit_test(bench_one_verification),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
