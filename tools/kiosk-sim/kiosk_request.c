/*
 * kiosk_request.c: building signed issuance requests and checking 201 answers (contract in
 * kiosk_request.h, wire format in DESIGN §4).
 *
 * Everything here is a pure function of its arguments plus OpenSSL's random generator: cards
 * and keyrings are written once while loading and only read afterwards, so any number of
 * threads may sign with the same card or verify with the same keyring (OpenSSL 3 allows
 * concurrent operations on one EVP_PKEY; every operation gets its own EVP_MD_CTX).  OpenSSL's
 * error queue is cleared before every return that follows an OpenSSL failure, so one bad card
 * does not leave stale errors for the next caller on the thread.
 *
 * Base64 is decoded strictly (standard alphabet, padded, no whitespace): a signed answer means
 * one thing only, and the server encodes the same way.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getline, strndup, gmtime_r, timegm; the build defines it too */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "kiosk_request.h"

#define KIOSK_PEM_MAX	   ((size_t)1 << 20) /* bytes of a card PEM file we read */
#define KIOSK_KEY_ID_MAX   127		     /* characters of a document key id */
#define KIOSK_ED25519_SIG  64		     /* bytes of an Ed25519 signature */
#define KIOSK_BINDING_HEAD "madoguchi-binding-v1\n"

const char *const kiosk_certificate_types[KIOSK_CERTIFICATE_TYPES + 1] = {
    "residence",	 "residence-record",  "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment", NULL};

struct kiosk_card {
	char serial[KIOSK_SERIAL_MAX + 1];
	enum kiosk_key_type key_type;
	char *cert_b64;
	EVP_PKEY *key;
};

struct kiosk_key {
	char key_id[KIOSK_KEY_ID_MAX + 1];
	EVP_PKEY *pub;
};

struct kiosk_keyring {
	size_t count;
	struct kiosk_key *keys;
};

/* Fills err (may be NULL) and returns status. */
static int kiosk_fail(struct kiosk_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int kiosk_fail(struct kiosk_error *err, int status, const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return status;
}

/* OpenSSL's reason for the last failure on this thread, then the queue cleared. */
static const char *kiosk_ssl_reason(char *buf, size_t cap)
{
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		snprintf(buf, cap, "no detail from OpenSSL");
	else
		ERR_error_string_n(e, buf, cap);
	ERR_clear_error();
	return buf;
}

int kiosk_certificate_index(const char *name)
{
	for (int i = 0; i < KIOSK_CERTIFICATE_TYPES; i++)
		if (strcmp(name, kiosk_certificate_types[i]) == 0)
			return i;
	return -1;
}

/* --- base64 ----------------------------------------------------------------------------- */

/* Standard padded base64 of in[0..len) as a new NUL-terminated string, or NULL. */
static char *kiosk_b64_encode(const unsigned char *in, size_t len)
{
	if (len > (size_t)INT32_MAX / 2)
		return NULL;
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	if (out == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/*
 * Strictly decodes standard padded base64 (len a multiple of 4, '=' only as the last one or two
 * characters) into a new buffer *out of *out_len bytes.  Returns 0, -1 on bad input (nothing
 * allocated), -2 out of memory.  The characters are checked here (EVP_DecodeBlock would skip
 * white space); the decoding itself is OpenSSL's, several times faster than a loop by hand on a
 * 60 KB document.
 */
/* The base64 alphabet as a table: a response's document is ~56 KB to check. */
static bool kiosk_b64_alphabet[256];
static pthread_once_t kiosk_b64_once = PTHREAD_ONCE_INIT;

static void kiosk_b64_table_init(void)
{
	static const char letters[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (const char *c = letters; *c != '\0'; c++)
		kiosk_b64_alphabet[(unsigned char)*c] = true;
}

static int kiosk_b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (len % 4 != 0 || len > (size_t)INT32_MAX)
		return -1;
	size_t pad = 0;
	if (len > 0 && in[len - 1] == '=')
		pad++;
	if (len > 1 && in[len - 2] == '=')
		pad++;
	/* EVP_DecodeBlock skips surrounding white space; DESIGN §4's base64 has none. */
	pthread_once(&kiosk_b64_once, kiosk_b64_table_init);
	for (size_t i = 0; i < len - pad; i++)
		if (!kiosk_b64_alphabet[(unsigned char)in[i]])
			return -1;
	unsigned char *buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return -2;
	int n = len == 0 ? 0 : EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n < pad) {
		free(buf);
		return -1;
	}
	*out = buf;
	*out_len = (size_t)n - pad;
	return 0;
}

/* --- cards ------------------------------------------------------------------------------ */

/* Refuses to prompt for a pass phrase: dev-pki keys are unencrypted. */
static int kiosk_no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

/* The serial of cert as DESIGN §4 spells it, into out; 0 or -1 (negative or too long). */
static int kiosk_serial_text(X509 *cert, char out[KIOSK_SERIAL_MAX + 1])
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	if (bn == NULL)
		return -1;
	int rc = -1;
	char *hex = BN_is_negative(bn) ? NULL : BN_bn2hex(bn);
	if (hex != NULL) {
		const char *p = hex;
		while (p[0] == '0' && p[1] != '\0')
			p++; /* BN_bn2hex pads to whole bytes */
		if (strlen(p) <= KIOSK_SERIAL_MAX) {
			strcpy(out, p);
			rc = 0;
		}
		OPENSSL_free(hex);
	}
	BN_free(bn);
	return rc;
}

/* The key type of pk, or 0 when it is neither RSA nor EC P-256. */
static enum kiosk_key_type kiosk_key_type_of(EVP_PKEY *pk)
{
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA)
		return KIOSK_KEY_RSA;
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
		char group[64];
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof group, NULL) == 1 &&
		    (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
			return KIOSK_KEY_EC_P256;
	}
	return (enum kiosk_key_type)0;
}

/* kiosk_card_load_pem with the names the messages use for the two inputs. */
static int kiosk_card_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem,
			       size_t key_len, const char *cert_name, const char *key_name,
			       struct kiosk_card **out, struct kiosk_error *err)
{
	char why[160];
	*out = NULL;
	if (cert_len > KIOSK_PEM_MAX || key_len > KIOSK_PEM_MAX)
		return kiosk_fail(err, KIOSK_ERR_INPUT, "%s: too large for a PEM certificate",
				  cert_len > KIOSK_PEM_MAX ? cert_name : key_name);
	BIO *bio = BIO_new_mem_buf(cert_pem, (int)cert_len);
	X509 *cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, kiosk_no_password, NULL) : NULL;
	BIO_free(bio);
	if (cert == NULL)
		return kiosk_fail(err, KIOSK_ERR_INPUT, "%s: not a PEM certificate (%s)", cert_name,
				  kiosk_ssl_reason(why, sizeof why));
	bio = BIO_new_mem_buf(key_pem, (int)key_len);
	EVP_PKEY *key =
	    bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, kiosk_no_password, NULL) : NULL;
	BIO_free(bio);
	int rc;
	struct kiosk_card *card = NULL;
	unsigned char *der = NULL;
	if (key == NULL) {
		rc = kiosk_fail(err, KIOSK_ERR_INPUT, "%s: not an unencrypted PEM private key (%s)",
				key_name, kiosk_ssl_reason(why, sizeof why));
		goto done;
	}
	card = calloc(1, sizeof *card);
	if (card == NULL) {
		rc = kiosk_fail(err, KIOSK_ERR_NOMEM, "out of memory");
		goto done;
	}
	card->key_type = kiosk_key_type_of(key);
	if (card->key_type == 0) {
		rc = kiosk_fail(err, KIOSK_ERR_INPUT,
				"%s: the key is neither RSA nor EC P-256, the card key types of "
				"DESIGN §4",
				key_name);
		goto done;
	}
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		rc = kiosk_fail(err, KIOSK_ERR_INPUT,
				"%s is not the key of %s: use the .key made with that certificate",
				key_name, cert_name);
		goto done;
	}
	if (kiosk_serial_text(cert, card->serial) != 0) {
		rc = kiosk_fail(err, KIOSK_ERR_INPUT,
				"%s: the serial number is negative or longer than 20 octets",
				cert_name);
		goto done;
	}
	int der_len = i2d_X509(cert, &der);
	if (der_len <= 0) {
		rc = kiosk_fail(err, KIOSK_ERR_CRYPTO, "%s: cannot encode as DER (%s)", cert_name,
				kiosk_ssl_reason(why, sizeof why));
		goto done;
	}
	card->cert_b64 = kiosk_b64_encode(der, (size_t)der_len);
	if (card->cert_b64 == NULL) {
		rc = kiosk_fail(err, KIOSK_ERR_NOMEM, "out of memory");
		goto done;
	}
	card->key = key;
	key = NULL;
	*out = card;
	card = NULL;
	rc = KIOSK_OK;
done:
	OPENSSL_free(der);
	kiosk_card_free(card);
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}

int kiosk_card_load_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
			struct kiosk_card **out, struct kiosk_error *err)
{
	return kiosk_card_from_pem(cert_pem, cert_len, key_pem, key_len, "card certificate",
				   "card key", out, err);
}

/* Reads a whole file of at most KIOSK_PEM_MAX bytes into a new buffer; 0 or -1 (err set). */
static int kiosk_read_file(const char *path, char **out, size_t *out_len, struct kiosk_error *err)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return kiosk_fail(err, KIOSK_ERR_INPUT, "%s: cannot open: %s", path,
				  strerror(errno));
	char *buf = malloc(KIOSK_PEM_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		return kiosk_fail(err, KIOSK_ERR_NOMEM, "out of memory");
	}
	size_t n = fread(buf, 1, KIOSK_PEM_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n > KIOSK_PEM_MAX) {
		free(buf);
		return kiosk_fail(err, KIOSK_ERR_INPUT, "%s: %s", path,
				  bad ? "read error" : "larger than 1 MiB, not a card PEM file");
	}
	*out = buf;
	*out_len = n;
	return KIOSK_OK;
}

int kiosk_card_load(const char *cert_path, const char *key_path, struct kiosk_card **out,
		    struct kiosk_error *err)
{
	char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	*out = NULL;
	int rc = kiosk_read_file(cert_path, &cert, &cert_len, err);
	if (rc == KIOSK_OK)
		rc = kiosk_read_file(key_path, &key, &key_len, err);
	if (rc == KIOSK_OK)
		rc = kiosk_card_from_pem(cert, cert_len, key, key_len, cert_path, key_path, out,
					 err);
	free(cert);
	if (key != NULL)
		OPENSSL_cleanse(key, key_len);
	free(key);
	return rc;
}

void kiosk_card_free(struct kiosk_card *card)
{
	if (card == NULL)
		return;
	EVP_PKEY_free(card->key);
	free(card->cert_b64);
	free(card);
}

const char *kiosk_card_serial(const struct kiosk_card *card)
{
	return card->serial;
}

enum kiosk_key_type kiosk_card_key_type(const struct kiosk_card *card)
{
	return card->key_type;
}

/* --- requests --------------------------------------------------------------------------- */

int kiosk_uuid4(char out[KIOSK_UUID_LEN + 1])
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof b) != 1) {
		ERR_clear_error();
		out[0] = '\0';
		return KIOSK_ERR_CRYPTO;
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, KIOSK_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return KIOSK_OK;
}

void kiosk_rfc3339(time_t t, char out[KIOSK_RFC3339_LEN + 1])
{
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, KIOSK_RFC3339_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm) != KIOSK_RFC3339_LEN)
		snprintf(out, KIOSK_RFC3339_LEN + 1, "1970-01-01T00:00:00Z");
}

/* Copies s (1..max characters) into dst; 0 or -1. */
static int kiosk_copy_field(char *dst, const char *s, size_t max)
{
	if (s == NULL)
		return -1;
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return -1;
	memcpy(dst, s, n + 1);
	return 0;
}

/* Signs body with the card's key into a new base64 string *out; KIOSK_OK or a status. */
static int kiosk_sign(const struct kiosk_card *card, const char *body, size_t len, char **out,
		      struct kiosk_error *err)
{
	char why[160];
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	int rc = KIOSK_ERR_CRYPTO;
	*out = NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	/* RSA keys default to PKCS#1 v1.5 padding; EC keys give a DER Ecdsa-Sig-Value. */
	if (md == NULL ||
	    EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, card->key, NULL) != 1 ||
	    EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)body, len) != 1 ||
	    (sig = OPENSSL_malloc(sig_len)) == NULL ||
	    EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)body, len) != 1) {
		kiosk_fail(err, rc, "cannot sign the request with the card key (%s)",
			   kiosk_ssl_reason(why, sizeof why));
		goto done;
	}
	*out = kiosk_b64_encode(sig, sig_len);
	rc = *out != NULL ? KIOSK_OK : kiosk_fail(err, KIOSK_ERR_NOMEM, "out of memory");
done:
	OPENSSL_free(sig);
	EVP_MD_CTX_free(md);
	return rc;
}

/* The request body as a JSON tree in the order of DESIGN §4, or NULL (invalid UTF-8, memory). */
static json_t *kiosk_body_json(const struct kiosk_request *r, const char *requested_at,
			       const struct kiosk_fields *f)
{
	json_t *options = json_pack("{s:b, s:b, s:b}", "household", f->household, "show_my_number",
				    f->show_my_number, "show_domicile", f->show_domicile);
	json_t *terminal = json_pack("{s:s, s:s, s:s}", "operator", f->terminal_operator, "store",
				     f->terminal_store, "kiosk", f->terminal_kiosk);
	if (options == NULL || terminal == NULL) {
		json_decref(options);
		json_decref(terminal);
		return NULL;
	}
	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:I, s:o, s:o}", "request_id", r->request_id, "requested_at",
	    requested_at, "municipality", r->municipality, "certificate", r->certificate, "copies",
	    (json_int_t)(f->copies == 0 ? 1 : f->copies), "options", options, "terminal", terminal);
}

int kiosk_request_build(const struct kiosk_card *card, const struct kiosk_fields *f,
			struct kiosk_request *out, struct kiosk_error *err)
{
	memset(out, 0, sizeof *out);
	char uuid[KIOSK_UUID_LEN + 1], now[KIOSK_RFC3339_LEN + 1];
	const char *request_id = f->request_id, *requested_at = f->requested_at;
	if (request_id == NULL) {
		if (kiosk_uuid4(uuid) != KIOSK_OK)
			return kiosk_fail(err, KIOSK_ERR_CRYPTO,
					  "the random generator failed (request_id)");
		request_id = uuid;
	}
	if (requested_at == NULL) {
		kiosk_rfc3339(time(NULL), now);
		requested_at = now;
	}
	if (kiosk_copy_field(out->request_id, request_id, KIOSK_REQUEST_ID_MAX) != 0)
		return kiosk_fail(err, KIOSK_ERR_INPUT, "request_id must be 1 to %d characters",
				  KIOSK_REQUEST_ID_MAX);
	if (kiosk_copy_field(out->municipality, f->municipality, KIOSK_MUNICIPALITY_MAX) != 0)
		return kiosk_fail(err, KIOSK_ERR_INPUT, "municipality must be 1 to %d characters",
				  KIOSK_MUNICIPALITY_MAX);
	if (kiosk_copy_field(out->certificate, f->certificate, KIOSK_CERTIFICATE_MAX) != 0)
		return kiosk_fail(err, KIOSK_ERR_INPUT, "certificate must be 1 to %d characters",
				  KIOSK_CERTIFICATE_MAX);
	if (f->terminal_operator == NULL || f->terminal_store == NULL || f->terminal_kiosk == NULL)
		return kiosk_fail(err, KIOSK_ERR_INPUT,
				  "terminal operator, store and kiosk are all required");
	strcpy(out->card_serial, card->serial);

	json_t *root = kiosk_body_json(out, requested_at, f);
	out->body = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (out->body == NULL) {
		kiosk_request_free(out);
		return kiosk_fail(err, KIOSK_ERR_INPUT,
				  "cannot encode the body: a field is not valid UTF-8");
	}
	out->body_len = strlen(out->body);
	out->certificate_header = strdup(card->cert_b64);
	if (out->certificate_header == NULL) {
		kiosk_request_free(out);
		return kiosk_fail(err, KIOSK_ERR_NOMEM, "out of memory");
	}
	int rc = kiosk_sign(card, out->body, out->body_len, &out->signature_header, err);
	if (rc != KIOSK_OK)
		kiosk_request_free(out);
	return rc;
}

void kiosk_request_free(struct kiosk_request *req)
{
	if (req == NULL)
		return;
	free(req->body); /* json_dumps uses malloc (jansson's default allocator) */
	free(req->certificate_header);
	free(req->signature_header);
	memset(req, 0, sizeof *req);
}

/* --- answers ---------------------------------------------------------------------------- */

void kiosk_keyring_free(struct kiosk_keyring *keys)
{
	if (keys == NULL)
		return;
	for (size_t i = 0; i < keys->count; i++)
		EVP_PKEY_free(keys->keys[i].pub);
	free(keys->keys);
	free(keys);
}

size_t kiosk_keyring_count(const struct kiosk_keyring *keys)
{
	return keys->count;
}

int kiosk_keyring_parse(const char *json, size_t len, struct kiosk_keyring **out,
			struct kiosk_error *err)
{
	*out = NULL;
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	json_t *list = json_object_get(root, "keys");
	if (!json_is_array(list)) {
		json_decref(root);
		return kiosk_fail(err, KIOSK_ERR_INPUT,
				  "GET /v1/keys: expected {\"keys\": [...]} (DESIGN §4)");
	}
	struct kiosk_keyring *kr = calloc(1, sizeof *kr);
	if (kr == NULL ||
	    (kr->keys = calloc(json_array_size(list) + 1, sizeof *kr->keys)) == NULL) {
		free(kr);
		json_decref(root);
		return kiosk_fail(err, KIOSK_ERR_NOMEM, "out of memory");
	}
	int rc = KIOSK_OK;
	size_t i;
	json_t *k;
	json_array_foreach(list, i, k)
	{
		const char *alg = json_string_value(json_object_get(k, "alg"));
		const char *id = json_string_value(json_object_get(k, "key_id"));
		const char *pem = json_string_value(json_object_get(k, "public_key_pem"));
		if (alg == NULL || strcmp(alg, "ed25519") != 0)
			continue;
		if (id == NULL || id[0] == '\0' || strlen(id) > KIOSK_KEY_ID_MAX || pem == NULL) {
			rc = kiosk_fail(err, KIOSK_ERR_INPUT,
					"GET /v1/keys: key %zu lacks key_id (1..%d characters) or "
					"public_key_pem",
					i, KIOSK_KEY_ID_MAX);
			break;
		}
		BIO *bio = BIO_new_mem_buf(pem, -1);
		EVP_PKEY *pub = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		if (pub == NULL || EVP_PKEY_get_base_id(pub) != EVP_PKEY_ED25519) {
			EVP_PKEY_free(pub);
			ERR_clear_error();
			rc = kiosk_fail(
			    err, KIOSK_ERR_INPUT,
			    "GET /v1/keys: key \"%s\" is not an Ed25519 public key in PEM", id);
			break;
		}
		strcpy(kr->keys[kr->count].key_id, id);
		kr->keys[kr->count++].pub = pub;
	}
	json_decref(root);
	if (rc == KIOSK_OK && kr->count == 0)
		rc = kiosk_fail(err, KIOSK_ERR_INPUT,
				"GET /v1/keys: no ed25519 key, so no binding can be checked");
	if (rc != KIOSK_OK) {
		kiosk_keyring_free(kr);
		return rc;
	}
	*out = kr;
	return KIOSK_OK;
}

static const EVP_PKEY *kiosk_keyring_find(const struct kiosk_keyring *keys, const char *id)
{
	for (size_t i = 0; i < keys->count; i++)
		if (strcmp(keys->keys[i].key_id, id) == 0)
			return keys->keys[i].pub;
	return NULL;
}

/* The string member name of obj (no embedded NUL), or NULL. */
static const char *kiosk_member(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);
	const char *s = json_string_value(v);
	if (s == NULL || strlen(s) != json_string_length(v))
		return NULL;
	return s;
}

static bool kiosk_printable(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

static bool kiosk_is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* Verifies the Ed25519 signature sig over the binding text; 1 good, 0 bad, -1 error. */
static int kiosk_binding_ok(const EVP_PKEY *pub, const char *text, size_t text_len,
			    const unsigned char *sig, size_t sig_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL)
		return -1;
	int rc = -1;
	/* EVP_DigestVerifyInit takes a non-const key but does not change it. */
	if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, (EVP_PKEY *)pub) == 1)
		rc = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)text, text_len) == 1;
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	return rc;
}

/*
 * The start of the value of the body's only `"data":"` member (just after its opening quote),
 * or NULL when there is none or more than one.
 */
static const char *kiosk_find_data(const char *body, size_t len)
{
	static const char key[] = "\"data\":\"";
	const size_t k = sizeof key - 1;
	const char *found = NULL;
	for (const char *p = body; (size_t)(p - body) + k <= len;) {
		const char *q = memchr(p, '"', len - (size_t)(p - body));
		if (q == NULL || (size_t)(q - body) + k > len)
			break;
		if (memcmp(q, key, k) == 0) {
			if (found != NULL)
				return NULL;
			found = q + k;
			/* Skip the value: base64 holds no quote. */
			const char *end = memchr(found, '"', len - (size_t)(found - body));
			if (end == NULL)
				return NULL;
			p = end + 1;
			continue;
		}
		p = q + 1;
	}
	return found;
}

int kiosk_response_verify(const struct kiosk_request *req, const struct kiosk_keyring *keys,
			  const char *body, size_t len, struct kiosk_issuance *out,
			  struct kiosk_error *err)
{
	if (out != NULL)
		memset(out, 0, sizeof *out);
	json_error_t je;
	/*
	 * The document's base64 is most of the body; jansson would scan and copy it character by
	 * character.  It is cut out here and the rest parsed: the parse must then show an empty
	 * document.data exactly where it was cut, or the body is refused as malformed.
	 */
	const char *cut = kiosk_find_data(body, len);
	const char *cut_end = cut ? memchr(cut, '"', len - (size_t)(cut - body)) : NULL;
	char *rest = NULL;
	size_t data_len = 0;
	json_t *root = NULL;
	if (cut_end != NULL && (rest = malloc(len - (size_t)(cut_end - cut) + 1)) != NULL) {
		size_t head = (size_t)(cut - body);
		data_len = (size_t)(cut_end - cut);
		memcpy(rest, body, head);
		memcpy(rest + head, cut_end, len - head - data_len);
		root = json_loadb(rest, len - data_len, JSON_REJECT_DUPLICATES, &je);
	} else if (cut == NULL) {
		root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	}
	free(rest);
	unsigned char *doc = NULL, *sig = NULL;
	size_t doc_len = 0, sig_len = 0;
	char *text = NULL;
	int rc;
	if (!json_is_object(root)) {
		rc = kiosk_fail(err, KIOSK_VERIFY_MALFORMED, "the 201 body is not a JSON object");
		goto done;
	}
	const json_t *subject = json_object_get(root, "subject");
	const json_t *document = json_object_get(root, "document");
	const json_t *binding = json_object_get(root, "binding");
	const char *m[11] = {
	    kiosk_member(root, "issuance_id"),	  kiosk_member(root, "request_id"),
	    kiosk_member(root, "municipality"),	  kiosk_member(root, "certificate"),
	    kiosk_member(subject, "card_serial"), kiosk_member(document, "media_type"),
	    kiosk_member(document, "sha256"),	  kiosk_member(document, "data"),
	    kiosk_member(binding, "alg"),	  kiosk_member(binding, "key_id"),
	    kiosk_member(binding, "signature")};
	static const char *const names[11] = {
	    "issuance_id",	   "request_id",	  "municipality",     "certificate",
	    "subject.card_serial", "document.media_type", "document.sha256",  "document.data",
	    "binding.alg",	   "binding.key_id",	  "binding.signature"};
	for (int i = 0; i < 11; i++) {
		if (m[i] == NULL) {
			rc = kiosk_fail(err, KIOSK_VERIFY_MALFORMED,
					"the 201 body lacks %s (a string)", names[i]);
			goto done;
		}
	}
	const char *issuance_id = m[0], *request_id = m[1], *municipality = m[2],
		   *certificate = m[3], *card_serial = m[4], *media_type = m[5], *sha = m[6],
		   *data = m[7], *alg = m[8], *key_id = m[9], *signature = m[10];
	if (!kiosk_printable(issuance_id, KIOSK_ISSUANCE_ID_MAX)) {
		rc = kiosk_fail(err, KIOSK_VERIFY_MALFORMED,
				"issuance_id is not 1 to %d printable ASCII characters",
				KIOSK_ISSUANCE_ID_MAX);
		goto done;
	}
	if (strcmp(request_id, req->request_id) != 0) {
		rc = kiosk_fail(err, KIOSK_VERIFY_REQUEST_ID,
				"request_id \"%.64s\" is not the one sent (\"%s\")", request_id,
				req->request_id);
		goto done;
	}
	if (strcmp(municipality, req->municipality) != 0 ||
	    strcmp(certificate, req->certificate) != 0) {
		rc =
		    kiosk_fail(err, KIOSK_VERIFY_ECHO,
			       "municipality/certificate \"%.16s\"/\"%.31s\" are not the ones sent "
			       "(\"%s\"/\"%s\")",
			       municipality, certificate, req->municipality, req->certificate);
		goto done;
	}
	if (strcmp(card_serial, req->card_serial) != 0) {
		/* Serials are card numbers, not personal data by themselves, and a test needs to
		 * see which card the answer named. */
		rc = kiosk_fail(err, KIOSK_VERIFY_CARD_SERIAL,
				"subject.card_serial \"%.40s\" is not the card's serial \"%s\"",
				card_serial, req->card_serial);
		goto done;
	}
	if (strcmp(media_type, "application/pdf") != 0) {
		rc = kiosk_fail(err, KIOSK_VERIFY_DOCUMENT,
				"document.media_type is not application/pdf");
		goto done;
	}
	if (!kiosk_is_hex64(sha)) {
		rc =
		    kiosk_fail(err, KIOSK_VERIFY_MALFORMED, "document.sha256 is not 64 hex digits");
		goto done;
	}
	if (cut != NULL && data[0] != '\0') {
		rc = kiosk_fail(err, KIOSK_VERIFY_MALFORMED,
				"the 201 body has more than one \"data\" member");
		goto done;
	}
	int b = cut != NULL ? kiosk_b64_decode(cut, data_len, &doc, &doc_len)
			    : kiosk_b64_decode(data, strlen(data), &doc, &doc_len);
	if (b != 0) {
		rc = kiosk_fail(err, b == -2 ? KIOSK_VERIFY_ERROR : KIOSK_VERIFY_MALFORMED, "%s",
				b == -2 ? "out of memory"
					: "document.data is not standard padded base64");
		goto done;
	}
	unsigned char digest[32];
	char hex[65];
	if (EVP_Digest(doc, doc_len, digest, NULL, EVP_sha256(), NULL) != 1) {
		ERR_clear_error();
		rc = kiosk_fail(err, KIOSK_VERIFY_ERROR, "SHA-256 failed in OpenSSL");
		goto done;
	}
	for (int i = 0; i < 32; i++)
		snprintf(hex + (size_t)2 * (size_t)i, 3, "%02x", digest[i]);
	if (strcasecmp(hex, sha) != 0) {
		rc = kiosk_fail(err, KIOSK_VERIFY_DOCUMENT,
				"document.sha256 is not the SHA-256 of the decoded document.data");
		goto done;
	}
	if (doc_len < 4 || memcmp(doc, "%PDF", 4) != 0) {
		rc = kiosk_fail(err, KIOSK_VERIFY_DOCUMENT,
				"document.data does not start with %%PDF");
		goto done;
	}
	if (strcmp(alg, "ed25519") != 0) {
		rc = kiosk_fail(err, KIOSK_VERIFY_BINDING, "binding.alg is not ed25519");
		goto done;
	}
	const EVP_PKEY *pub = kiosk_keyring_find(keys, key_id);
	if (pub == NULL) {
		rc = kiosk_fail(err, KIOSK_VERIFY_BINDING,
				"binding.key_id \"%.64s\" is not among the keys of GET /v1/keys",
				key_id);
		goto done;
	}
	b = kiosk_b64_decode(signature, strlen(signature), &sig, &sig_len);
	if (b != 0 || sig_len != KIOSK_ED25519_SIG) {
		rc = kiosk_fail(err, b == -2 ? KIOSK_VERIFY_ERROR : KIOSK_VERIFY_BINDING, "%s",
				b == -2 ? "out of memory"
					: "binding.signature is not 64 bytes in standard base64");
		goto done;
	}
	size_t text_len = strlen(KIOSK_BINDING_HEAD) + strlen(issuance_id) + strlen(request_id) +
			  strlen(municipality) + strlen(certificate) + strlen(card_serial) +
			  strlen(sha) + 6;
	text = malloc(text_len + 1);
	if (text == NULL) {
		rc = kiosk_fail(err, KIOSK_VERIFY_ERROR, "out of memory");
		goto done;
	}
	snprintf(text, text_len + 1, KIOSK_BINDING_HEAD "%s\n%s\n%s\n%s\n%s\n%s\n", issuance_id,
		 request_id, municipality, certificate, card_serial, sha);
	int ok = kiosk_binding_ok(pub, text, text_len, sig, sig_len);
	if (ok != 1) {
		rc = kiosk_fail(err, ok < 0 ? KIOSK_VERIFY_ERROR : KIOSK_VERIFY_BINDING, "%s",
				ok < 0 ? "Ed25519 verification failed in OpenSSL"
				       : "the binding signature does not verify with key_id's key");
		goto done;
	}
	if (out != NULL) {
		strcpy(out->issuance_id, issuance_id);
		out->document = doc;
		out->document_len = doc_len;
		doc = NULL;
	}
	rc = KIOSK_VERIFY_OK;
done:
	free(text);
	free(sig);
	free(doc);
	json_decref(root);
	return rc;
}

void kiosk_issuance_free(struct kiosk_issuance *iss)
{
	if (iss == NULL)
		return;
	free(iss->document);
	memset(iss, 0, sizeof *iss);
}

const char *kiosk_verify_name(int status)
{
	switch (status) {
	case KIOSK_VERIFY_OK:
		return "ok";
	case KIOSK_VERIFY_MALFORMED:
		return "malformed";
	case KIOSK_VERIFY_REQUEST_ID:
		return "request_id";
	case KIOSK_VERIFY_ECHO:
		return "echo";
	case KIOSK_VERIFY_CARD_SERIAL:
		return "card_serial";
	case KIOSK_VERIFY_DOCUMENT:
		return "document";
	case KIOSK_VERIFY_BINDING:
		return "binding";
	default:
		return "error";
	}
}

int kiosk_problem_code(const char *body, size_t len, char *code, size_t cap)
{
	if (cap > 0)
		code[0] = '\0';
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je);
	const char *c = json_string_value(json_object_get(root, "code"));
	int rc = -1;
	if (c != NULL && cap > 0) {
		snprintf(code, cap, "%s", c);
		rc = 0;
	}
	json_decref(root);
	return rc;
}
