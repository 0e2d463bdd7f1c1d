/*
 * doccode.c: per-page verification codes (format and contract in doccode.h).
 *
 * Signing and verifying use OpenSSL's one-shot EVP_DigestSign/EVP_DigestVerify with Ed25519;
 * each call makes its own EVP_MD_CTX, so the immutable key objects can be shared by threads
 * (OpenSSL 3 EVP_PKEYs are safe for concurrent use once made).  Parsing is strict: every part
 * is re-encoded after decoding and compared with the input, so a code has exactly one spelling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "doccode.h"
#include "ossl.h"

#define DOCCODE_SIG_B64_LEN 86 /* ceil(64 * 8 / 6), no padding */

struct doc_signer {
	EVP_PKEY *key;
	char key_id[DOCCODE_KEY_ID_LEN + 1];
};

struct doc_verifier {
	EVP_PKEY *key;
	char key_id[DOCCODE_KEY_ID_LEN + 1];
};

static const char doccode_hex[] = "0123456789abcdef";
static const char doccode_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int doccode_fail(char *err, size_t err_size, int status, const char *msg, const char *arg)
{
	if (err != NULL && err_size > 0)
		snprintf(err, err_size, "%s%s%s", msg, arg ? ": " : "", arg ? arg : "");
	return status;
}

static int doc_signer_wrap(EVP_PKEY *key, struct doc_signer **out, char *err, size_t err_size)
{
	if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(key);
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "the document key is not an Ed25519 key", NULL);
	}
	struct doc_signer *s = calloc(1, sizeof *s);
	if (s == NULL || ossl_ed25519_key_id(key, s->key_id) != 0) {
		free(s);
		EVP_PKEY_free(key);
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "cannot derive the document key's public key", NULL);
	}
	s->key = key;
	*out = s;
	return DOCCODE_OK;
}

int doc_signer_load(const char *pem_path, struct doc_signer **out, char *err, size_t err_size)
{
	char why[256];
	*out = NULL;
	FILE *f = fopen(pem_path, "r");
	if (f == NULL)
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "cannot open the document key file", pem_path);
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL) {
		snprintf(why, sizeof why, "%s is not a PEM private key (%s)", pem_path,
			 ossl_reason((char[128]){0}, 128, true));
		return doccode_fail(err, err_size, DOCCODE_ERROR, why, NULL);
	}
	return doc_signer_wrap(key, out, err, err_size);
}

int doc_signer_generate(struct doc_signer **out, char *err, size_t err_size)
{
	char why[128];
	*out = NULL;
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (key == NULL)
		return doccode_fail(err, err_size, DOCCODE_ERROR, "cannot generate an Ed25519 key",
				    ossl_reason(why, sizeof why, true));
	return doc_signer_wrap(key, out, err, err_size);
}

void doc_signer_free(struct doc_signer *signer)
{
	if (signer == NULL)
		return;
	EVP_PKEY_free(signer->key);
	free(signer);
}

const char *doc_signer_key_id(const struct doc_signer *signer)
{
	return signer->key_id;
}

/* key's public half as PEM SPKI text (malloc'd), or NULL on out-of-memory. */
static char *doccode_public_pem(EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *text = NULL;
	if (bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1) {
		char *data = NULL;
		long n = BIO_get_mem_data(bio, &data);
		text = n >= 0 ? malloc((size_t)n + 1) : NULL;
		if (text != NULL) {
			memcpy(text, data, (size_t)n);
			text[n] = '\0';
		}
	}
	BIO_free(bio);
	return text;
}

char *doc_signer_public_pem(const struct doc_signer *signer)
{
	return doccode_public_pem(signer->key);
}

char *doc_verifier_public_pem(const struct doc_verifier *verifier)
{
	return doccode_public_pem(verifier->key);
}

static int doc_verifier_wrap(EVP_PKEY *key, struct doc_verifier **out, char *err, size_t err_size)
{
	if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(key);
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "the public key is not an Ed25519 key", NULL);
	}
	struct doc_verifier *v = calloc(1, sizeof *v);
	if (v == NULL || ossl_ed25519_key_id(key, v->key_id) != 0) {
		free(v);
		EVP_PKEY_free(key);
		return doccode_fail(err, err_size, DOCCODE_ERROR, "cannot read the public key",
				    NULL);
	}
	v->key = key;
	*out = v;
	return DOCCODE_OK;
}

int doc_verifier_from_pem(const char *pem, struct doc_verifier **out, char *err, size_t err_size)
{
	char why[128];
	*out = NULL;
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (key == NULL)
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "not a PEM public key (SubjectPublicKeyInfo)",
				    ossl_reason(why, sizeof why, true));
	return doc_verifier_wrap(key, out, err, err_size);
}

int doc_verifier_load(const char *pem_path, struct doc_verifier **out, char *err, size_t err_size)
{
	char why[256];
	*out = NULL;
	FILE *f = fopen(pem_path, "r");
	if (f == NULL)
		return doccode_fail(err, err_size, DOCCODE_ERROR, "cannot open the public key file",
				    pem_path);
	EVP_PKEY *key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL) {
		snprintf(why, sizeof why,
			 "%s is not a PEM public key (SubjectPublicKeyInfo; make one with "
			 "`openssl pkey -in document.key -pubout`)",
			 pem_path);
		ERR_clear_error();
		return doccode_fail(err, err_size, DOCCODE_ERROR, why, NULL);
	}
	return doc_verifier_wrap(key, out, err, err_size);
}

void doc_verifier_free(struct doc_verifier *verifier)
{
	if (verifier == NULL)
		return;
	EVP_PKEY_free(verifier->key);
	free(verifier);
}

const char *doc_verifier_key_id(const struct doc_verifier *verifier)
{
	return verifier->key_id;
}

int doccode_issuance_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > DOCCODE_ISSUANCE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int doccode_digest(const char *issuance_id, const char *certificate, const json_t *record,
		   char out[DOCCODE_DIGEST_LEN + 1])
{
	unsigned char md[32];
	out[0] = '\0';
	if (!doccode_issuance_id_ok(issuance_id) || certificate == NULL || record == NULL)
		return DOCCODE_ERROR;
	char *json = json_dumps(record, JSON_SORT_KEYS | JSON_COMPACT);
	if (json == NULL)
		return DOCCODE_ERROR;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(ctx, "madoguchi-doc-v1\n", 17) == 1 &&
		 EVP_DigestUpdate(ctx, issuance_id, strlen(issuance_id)) == 1 &&
		 EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
		 EVP_DigestUpdate(ctx, certificate, strlen(certificate)) == 1 &&
		 EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
		 EVP_DigestUpdate(ctx, json, strlen(json)) == 1 &&
		 EVP_DigestUpdate(ctx, "\n", 1) == 1 && EVP_DigestFinal_ex(ctx, md, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	free(json);
	if (!ok)
		return DOCCODE_ERROR;
	ossl_hex(md, DOCCODE_DIGEST_LEN / 2, out);
	return DOCCODE_OK;
}

static int doccode_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(doccode_hex, s[i]) == NULL)
			return 0;
	return 1;
}

/* The exact text a page signature covers; returns its length or -1. */
static int doccode_signed_text(char *buf, size_t size, const char *issuance_id, unsigned page,
			       unsigned pages, const char *digest)
{
	int n = snprintf(buf, size, "madoguchi-page-v1\n%s\n%u\n%u\n%s\n", issuance_id, page, pages,
			 digest);
	return n > 0 && (size_t)n < size ? n : -1;
}

static void doccode_b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = doccode_b64url[v >> 18 & 63];
		out[o++] = doccode_b64url[v >> 12 & 63];
		out[o++] = doccode_b64url[v >> 6 & 63];
		out[o++] = doccode_b64url[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = doccode_b64url[v >> 18 & 63];
		out[o++] = doccode_b64url[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = doccode_b64url[v >> 18 & 63];
		out[o++] = doccode_b64url[v >> 12 & 63];
		out[o++] = doccode_b64url[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* Decodes exactly DOCCODE_SIG_B64_LEN characters into 64 bytes; canonical spelling only. */
static int doccode_sig_decode(const char *s, unsigned char sig[DOCCODE_SIG_LEN])
{
	unsigned char tmp[DOCCODE_SIG_LEN + 3];
	char again[DOCCODE_SIG_B64_LEN + 4];
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;
	if (strlen(s) != DOCCODE_SIG_B64_LEN)
		return -1;
	for (size_t i = 0; i < DOCCODE_SIG_B64_LEN; i++) {
		const char *p = strchr(doccode_b64url, s[i]);
		if (p == NULL)
			return -1;
		acc = (acc << 6 | (unsigned)(p - doccode_b64url)) & 0xffffu;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < sizeof tmp)
				tmp[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (o != DOCCODE_SIG_LEN)
		return -1;
	memcpy(sig, tmp, DOCCODE_SIG_LEN);
	/* The last character has 4 unused bits: only the spelling with zeros is accepted. */
	doccode_b64url_encode(sig, DOCCODE_SIG_LEN, again);
	return strcmp(again, s) == 0 ? 0 : -1;
}

int doc_signer_sign(const struct doc_signer *signer, const void *msg, size_t len,
		    unsigned char sig[DOCCODE_SIG_LEN])
{
	size_t sig_len = DOCCODE_SIG_LEN;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, signer->key) == 1 &&
		 EVP_DigestSign(ctx, sig, &sig_len, msg, len) == 1 && sig_len == DOCCODE_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? DOCCODE_OK : DOCCODE_ERROR;
}

int doccode_make(const struct doc_signer *signer, const char *issuance_id, unsigned page,
		 unsigned pages, const char *digest, char *out, size_t out_size, char *err,
		 size_t err_size)
{
	char text[256], b64[DOCCODE_SIG_B64_LEN + 1], why[128];
	unsigned char sig[DOCCODE_SIG_LEN];
	size_t sig_len = sizeof sig;

	if (out_size > 0)
		out[0] = '\0';
	if (!doccode_issuance_id_ok(issuance_id))
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "the issuance id must be 1-64 characters of A-Z a-z 0-9 . _ -",
				    NULL);
	if (page < 1 || page > pages || pages > DOCCODE_PAGES_MAX)
		return doccode_fail(err, err_size, DOCCODE_ERROR, "page number out of range", NULL);
	if (digest == NULL || strlen(digest) != DOCCODE_DIGEST_LEN ||
	    !doccode_is_hex(digest, DOCCODE_DIGEST_LEN))
		return doccode_fail(err, err_size, DOCCODE_ERROR,
				    "the digest must be 16 lower-case hex characters", NULL);
	int n = doccode_signed_text(text, sizeof text, issuance_id, page, pages, digest);
	int ok = n > 0 && doc_signer_sign(signer, text, (size_t)n, sig) == DOCCODE_OK;
	(void)sig_len;
	if (!ok)
		return doccode_fail(err, err_size, DOCCODE_ERROR, "cannot sign the page code",
				    ossl_reason(why, sizeof why, true));
	doccode_b64url_encode(sig, sizeof sig, b64);
	int m = snprintf(out, out_size, DOCCODE_PREFIX ":%s:%s:%u/%u:%s:%s", signer->key_id,
			 issuance_id, page, pages, digest, b64);
	if (m < 0 || (size_t)m >= out_size)
		return doccode_fail(err, err_size, DOCCODE_ERROR, "code buffer too small", NULL);
	return DOCCODE_OK;
}

/* Parses a canonical decimal 1..DOCCODE_PAGES_MAX of exactly n characters. */
static int doccode_parse_page(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	if (n == 0 || n > 3 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int doccode_verify(const struct doc_verifier *verifier, const char *code, struct doccode_info *info,
		   char *err, size_t err_size)
{
	struct doccode_info got;
	unsigned char sig[DOCCODE_SIG_LEN];
	char text[256];
	const char *part[6];
	size_t len[6];

	memset(&got, 0, sizeof got);
	if (info != NULL)
		memset(info, 0, sizeof *info);
	if (code == NULL || strlen(code) >= DOCCODE_TEXT_MAX)
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: empty or too long", NULL);
	/* Six parts separated by ':'. */
	const char *p = code;
	for (int i = 0; i < 6; i++) {
		const char *colon = i < 5 ? strchr(p, ':') : NULL;
		if (i < 5 && colon == NULL)
			return doccode_fail(err, err_size, DOCCODE_MALFORMED,
					    "malformed code: expected MDG1:KEY:ISSUANCE:PAGE/PAGES:"
					    "DIGEST:SIGNATURE",
					    NULL);
		part[i] = p;
		len[i] = colon ? (size_t)(colon - p) : strlen(p);
		p = colon ? colon + 1 : p + len[i];
	}
	if (len[0] != strlen(DOCCODE_PREFIX) || memcmp(part[0], DOCCODE_PREFIX, len[0]) != 0)
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: it does not start with " DOCCODE_PREFIX ":",
				    NULL);
	if (len[1] != DOCCODE_KEY_ID_LEN || !doccode_is_hex(part[1], len[1]))
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: the key id is not 16 lower-case hex", NULL);
	memcpy(got.key_id, part[1], len[1]);
	if (len[2] == 0 || len[2] > DOCCODE_ISSUANCE_MAX)
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: bad issuance id", NULL);
	memcpy(got.issuance_id, part[2], len[2]);
	if (!doccode_issuance_id_ok(got.issuance_id))
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: bad issuance id", NULL);
	const char *slash = memchr(part[3], '/', len[3]);
	if (slash == NULL ||
	    doccode_parse_page(part[3], (size_t)(slash - part[3]), &got.page) != 0 ||
	    doccode_parse_page(slash + 1, len[3] - (size_t)(slash - part[3]) - 1, &got.pages) !=
		0 ||
	    got.page > got.pages)
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: bad page number (expected n/N)", NULL);
	if (len[4] != DOCCODE_DIGEST_LEN || !doccode_is_hex(part[4], len[4]))
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: the digest is not 16 lower-case hex", NULL);
	memcpy(got.digest, part[4], len[4]);
	if (doccode_sig_decode(part[5], sig) != 0)
		return doccode_fail(err, err_size, DOCCODE_MALFORMED,
				    "malformed code: the signature is not 86 characters of "
				    "canonical base64url",
				    NULL);
	if (strcmp(got.key_id, verifier->key_id) != 0) {
		char why[128];
		snprintf(why, sizeof why, "the code was made by key %s, not by key %s", got.key_id,
			 verifier->key_id);
		return doccode_fail(err, err_size, DOCCODE_WRONG_KEY, why, NULL);
	}
	int n = doccode_signed_text(text, sizeof text, got.issuance_id, got.page, got.pages,
				    got.digest);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok =
	    n > 0 && ctx != NULL &&
	    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, verifier->key) == 1 &&
	    EVP_DigestVerify(ctx, sig, sizeof sig, (const unsigned char *)text, (size_t)n) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (!ok)
		return doccode_fail(err, err_size, DOCCODE_BAD_SIGNATURE,
				    "the signature does not verify: the code was altered or forged",
				    NULL);
	if (info != NULL)
		*info = got;
	return DOCCODE_OK;
}
