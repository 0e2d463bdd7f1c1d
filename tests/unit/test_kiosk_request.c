/*
 * test_kiosk_request.c: the kiosk simulator's request builder and answer checker
 * (tools/kiosk-sim/kiosk_request.c).
 *
 * The test makes its own throwaway keys with OpenSSL's C API: an RSA-2048 card and a P-256 card
 * (self-signed, serials with a leading zero byte), and two Ed25519 document keys.  What must
 * hold: a built request's signature verifies over the exact body bytes with the card's public
 * key (RSA PKCS#1 v1.5 SHA-256, ECDSA P-256 SHA-256 DER) and fails after one changed byte; the
 * certificate header is the card's DER; the body carries the fields of DESIGN §4 and the
 * serial is upper-case hex without leading zeros; cards load from PEM files and a key of
 * another card is refused.  A correctly made 201 (built here, binding signed with an Ed25519
 * key published as GET /v1/keys would) is accepted with its document; a changed card_serial,
 * a changed document byte, a binding by another key, another request_id, another
 * municipality, an unknown key_id, a non-PDF document and garbage are each rejected with
 * their own status.  Environment: TMPDIR.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getline, strndup, gmtime_r, timegm; the build defines it too */
#endif
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
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kiosk_request.h"

/* A throwaway card: key, certificate and both as PEM text. */
struct test_card {
	EVP_PKEY *key;
	X509 *cert;
	char *cert_pem, *key_pem;
	struct kiosk_card *card;
};

static struct test_card rsa_card, ec_card;
static EVP_PKEY *doc_key, *other_doc_key;
static struct kiosk_keyring *keyring;

static const char pdf[] = "%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n";

static char *bio_text(BIO *bio)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	BIO_free(bio);
	return s;
}

static char *b64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	assert_non_null(out);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

static unsigned char *unb64(const char *in, size_t *n)
{
	size_t len = strlen(in);
	unsigned char *out = malloc(len / 4 * 3 + 1);
	assert_non_null(out);
	int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	assert_true(r >= 0);
	size_t pad = (len > 0 && in[len - 1] == '=') + (len > 1 && in[len - 2] == '=');
	*n = (size_t)r - pad;
	return out;
}

/* A self-signed card certificate for key with the given hex serial. */
static void make_card(struct test_card *c, EVP_PKEY *key, const char *serial_hex)
{
	c->key = key;
	assert_non_null(key);
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	assert_true(BN_hex2bn(&bn, serial_hex) > 0);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
	X509_set_version(x, 2);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test card", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	c->cert = x;
	BIO *bio = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(bio, x);
	c->cert_pem = bio_text(bio);
	bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	c->key_pem = bio_text(bio);
	struct kiosk_error err;
	int rc = kiosk_card_load_pem(c->cert_pem, strlen(c->cert_pem), c->key_pem,
				     strlen(c->key_pem), &c->card, &err);
	if (rc != KIOSK_OK)
		fail_msg("kiosk_card_load_pem: %s", err.message);
}

static void free_card(struct test_card *c)
{
	kiosk_card_free(c->card);
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
	free(c->cert_pem);
	free(c->key_pem);
}

static char *public_pem(EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(bio, key);
	return bio_text(bio);
}

static int group_setup(void **state)
{
	(void)state;
	make_card(&rsa_card, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), "00A1B2C3D4");
	make_card(&ec_card, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), "0F00000000000001");
	doc_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	other_doc_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(doc_key);
	assert_non_null(other_doc_key);
	/* GET /v1/keys as DESIGN §4 shows it, with a key of another algorithm that is skipped. */
	char *pem = public_pem(doc_key);
	json_t *keys = json_pack("{s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}", "keys", "key_id",
				 "doc-2026", "alg", "ed25519", "public_key_pem", pem, "key_id",
				 "future", "alg", "ml-dsa-65", "public_key_pem", "-----");
	char *text = json_dumps(keys, 0);
	struct kiosk_error err;
	int rc = kiosk_keyring_parse(text, strlen(text), &keyring, &err);
	if (rc != KIOSK_OK)
		fail_msg("kiosk_keyring_parse: %s", err.message);
	assert_int_equal(kiosk_keyring_count(keyring), 1);
	free(text);
	json_decref(keys);
	free(pem);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free_card(&rsa_card);
	free_card(&ec_card);
	EVP_PKEY_free(doc_key);
	EVP_PKEY_free(other_doc_key);
	kiosk_keyring_free(keyring);
	return 0;
}

static const struct kiosk_fields demo_fields = {
    .request_id = "4b0e7a52-8f5e-4d1c-9a51-3f2f1c9a7e10",
    .requested_at = "2026-11-27T09:00:00Z",
    .municipality = "141003",
    .certificate = "residence",
    .terminal_operator = "chain-a",
    .terminal_store = "012345",
    .terminal_kiosk = "01",
};

static void build(const struct test_card *c, struct kiosk_request *req)
{
	struct kiosk_error err;
	int rc = kiosk_request_build(c->card, &demo_fields, req, &err);
	if (rc != KIOSK_OK)
		fail_msg("kiosk_request_build: %s", err.message);
}

/*
 * Checks that req's headers carry c's certificate and a signature over body (body_len bytes)
 * by c's key; returns what EVP_DigestVerify said (1 good).
 */
static int signature_verifies(const struct test_card *c, const struct kiosk_request *req,
			      const char *body, size_t body_len)
{
	size_t der_len, sig_len;
	unsigned char *der = unb64(req->certificate_header, &der_len);
	const unsigned char *p = der;
	X509 *sent = d2i_X509(NULL, &p, (long)der_len);
	assert_non_null(sent);
	assert_int_equal(X509_cmp(sent, c->cert), 0);
	unsigned char *sig = unb64(req->signature_header, &sig_len);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	/* The default padding of an RSA key is PKCS#1 v1.5, so a PSS signature would fail. */
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(sent)),
			 1);
	int ok = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)body, body_len);
	if (kiosk_card_key_type(c->card) == KIOSK_KEY_EC_P256) {
		p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
		assert_non_null(es); /* DER Ecdsa-Sig-Value, not raw r||s */
		assert_ptr_equal(p, sig + sig_len);
		ECDSA_SIG_free(es);
	}
	EVP_MD_CTX_free(md);
	X509_free(sent);
	free(sig);
	free(der);
	return ok;
}

static void a_request_signed_by_the_card_verifies_over_the_exact_body(struct test_card *c)
{
	struct kiosk_request req;
	build(c, &req);
	assert_int_equal(strlen(req.body), req.body_len);
	assert_int_equal(signature_verifies(c, &req, req.body, req.body_len), 1);

	char *changed = strdup(req.body);
	changed[req.body_len / 2] ^= 0x01;
	assert_int_not_equal(signature_verifies(c, &req, changed, req.body_len), 1);
	free(changed);
	/* A trailing newline is a different body too. */
	char *longer = malloc(req.body_len + 2);
	memcpy(longer, req.body, req.body_len);
	memcpy(longer + req.body_len, "\n", 2);
	assert_int_not_equal(signature_verifies(c, &req, longer, req.body_len + 1), 1);
	free(longer);
	kiosk_request_free(&req);
	kiosk_request_free(&req); /* a freed request is zeroed and may be freed again */
}

static void rsa_card_signs_with_pkcs1_sha256_over_the_exact_body(void **state)
{
	(void)state;
	assert_int_equal(kiosk_card_key_type(rsa_card.card), KIOSK_KEY_RSA);
	a_request_signed_by_the_card_verifies_over_the_exact_body(&rsa_card);
}

static void p256_card_signs_with_ecdsa_sha256_der_over_the_exact_body(void **state)
{
	(void)state;
	assert_int_equal(kiosk_card_key_type(ec_card.card), KIOSK_KEY_EC_P256);
	a_request_signed_by_the_card_verifies_over_the_exact_body(&ec_card);
}

static void serial_is_upper_hex_without_leading_zeros(void **state)
{
	(void)state;
	assert_string_equal(kiosk_card_serial(rsa_card.card), "A1B2C3D4");
	assert_string_equal(kiosk_card_serial(ec_card.card), "F00000000000001");
	struct kiosk_request req;
	build(&ec_card, &req);
	assert_string_equal(req.card_serial, "F00000000000001");
	kiosk_request_free(&req);
}

static void body_carries_the_fields_of_design_4(void **state)
{
	(void)state;
	struct kiosk_request req;
	build(&ec_card, &req);
	json_error_t je;
	json_t *b = json_loads(req.body, JSON_REJECT_DUPLICATES, &je);
	assert_non_null(b);
	assert_int_equal(json_object_size(b), 7);
	assert_string_equal(json_string_value(json_object_get(b, "request_id")),
			    demo_fields.request_id);
	assert_string_equal(json_string_value(json_object_get(b, "requested_at")),
			    "2026-11-27T09:00:00Z");
	assert_string_equal(json_string_value(json_object_get(b, "municipality")), "141003");
	assert_string_equal(json_string_value(json_object_get(b, "certificate")), "residence");
	assert_int_equal(json_integer_value(json_object_get(b, "copies")), 1);
	json_t *o = json_object_get(b, "options");
	assert_true(json_is_false(json_object_get(o, "household")));
	assert_true(json_is_false(json_object_get(o, "show_my_number")));
	assert_true(json_is_false(json_object_get(o, "show_domicile")));
	json_t *t = json_object_get(b, "terminal");
	assert_string_equal(json_string_value(json_object_get(t, "operator")), "chain-a");
	assert_string_equal(json_string_value(json_object_get(t, "store")), "012345");
	assert_string_equal(json_string_value(json_object_get(t, "kiosk")), "01");
	json_decref(b);
	kiosk_request_free(&req);
}

static void defaults_give_a_fresh_uuid4_and_now(void **state)
{
	(void)state;
	struct kiosk_fields f = demo_fields;
	f.request_id = NULL;
	f.requested_at = NULL;
	struct kiosk_request a, b;
	struct kiosk_error err;
	assert_int_equal(kiosk_request_build(ec_card.card, &f, &a, &err), KIOSK_OK);
	assert_int_equal(kiosk_request_build(ec_card.card, &f, &b, &err), KIOSK_OK);
	assert_int_equal(strlen(a.request_id), KIOSK_UUID_LEN);
	assert_int_equal(a.request_id[14], '4');
	assert_non_null(strchr("89ab", a.request_id[19]));
	assert_string_not_equal(a.request_id, b.request_id);
	json_error_t je;
	json_t *body = json_loads(a.body, 0, &je);
	const char *at = json_string_value(json_object_get(body, "requested_at"));
	assert_non_null(at);
	assert_int_equal(strlen(at), KIOSK_RFC3339_LEN);
	struct tm tm = {0};
	const char *end = strptime(at, "%Y-%m-%dT%H:%M:%SZ", &tm);
	assert_non_null(end);
	assert_int_equal(*end, '\0');
	time_t t = timegm(&tm), now = time(NULL);
	assert_true(t <= now && now - t <= 5);
	json_decref(body);
	kiosk_request_free(&a);
	kiosk_request_free(&b);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void cards_load_from_files_and_a_foreign_key_is_refused(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	char dir[512], pem[600], key[600], other[600];
	snprintf(dir, sizeof dir, "%s/kiosk-XXXXXX", tmp != NULL ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(pem, sizeof pem, "%s/A1B2C3D4.pem", dir);
	snprintf(key, sizeof key, "%s/A1B2C3D4.key", dir);
	snprintf(other, sizeof other, "%s/other.key", dir);
	write_file(pem, rsa_card.cert_pem);
	write_file(key, rsa_card.key_pem);
	write_file(other, ec_card.key_pem);
	struct kiosk_card *card = NULL;
	struct kiosk_error err;
	assert_int_equal(kiosk_card_load(pem, key, &card, &err), KIOSK_OK);
	assert_string_equal(kiosk_card_serial(card), "A1B2C3D4");
	kiosk_card_free(card);
	assert_int_equal(kiosk_card_load(pem, other, &card, &err), KIOSK_ERR_INPUT);
	assert_null(card);
	assert_non_null(strstr(err.message, "is not the key of"));
	assert_int_equal(kiosk_card_load(pem, "/nonexistent/x.key", &card, &err), KIOSK_ERR_INPUT);
	assert_non_null(strstr(err.message, "/nonexistent/x.key"));
	assert_int_equal(kiosk_card_load(key, key, &card, &err), KIOSK_ERR_INPUT);
	unlink(pem);
	unlink(key);
	unlink(other);
	rmdir(dir);
}

/* --- answers ---------------------------------------------------------------------------- */

/* What to get wrong in a made-up 201 answer. */
struct answer_spec {
	const char *card_serial;  /* NULL: the request's */
	const char *request_id;	  /* NULL: the request's */
	const char *municipality; /* NULL: the request's */
	const char *key_id;	  /* NULL: "doc-2026" */
	EVP_PKEY *signer;	  /* NULL: doc_key */
	const char *document;	  /* NULL: pdf */
	bool flip_document_byte;  /* change a byte after computing sha256 and the binding */
};

/* A 201 body for req as the appliance makes it (DESIGN §4), with spec's faults. */
static char *make_answer(const struct kiosk_request *req, const struct answer_spec *spec)
{
	const char *serial = spec->card_serial != NULL ? spec->card_serial : req->card_serial;
	const char *rid = spec->request_id != NULL ? spec->request_id : req->request_id;
	const char *mun = spec->municipality != NULL ? spec->municipality : req->municipality;
	const char *doc_text = spec->document != NULL ? spec->document : pdf;
	size_t doc_len = strlen(doc_text);
	unsigned char *doc = malloc(doc_len);
	assert_non_null(doc);
	memcpy(doc, doc_text, doc_len);
	unsigned char digest[32];
	EVP_Digest(doc, doc_len, digest, NULL, EVP_sha256(), NULL);
	char sha[65];
	for (size_t i = 0; i < 32; i++)
		sprintf(sha + 2 * i, "%02x", digest[i]);
	if (spec->flip_document_byte)
		doc[doc_len - 3] ^= 0x20;
	const char *issuance_id = "141003-20261127-000123";
	char text[1024];
	int n = snprintf(text, sizeof text, "madoguchi-binding-v1\n%s\n%s\n%s\n%s\n%s\n%s\n",
			 issuance_id, rid, mun, req->certificate, serial, sha);
	unsigned char sig[64];
	size_t sig_len = sizeof sig;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_int_equal(
	    EVP_DigestSignInit(md, NULL, NULL, NULL, spec->signer != NULL ? spec->signer : doc_key),
	    1);
	assert_int_equal(EVP_DigestSign(md, sig, &sig_len, (unsigned char *)text, (size_t)n), 1);
	EVP_MD_CTX_free(md);
	char *data = b64(doc, doc_len), *sig64 = b64(sig, sig_len);
	json_t *a = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:i, s:i, s:{s:s, s:s, s:s}, "
	    "s:{s:s, s:s, s:s}}",
	    "issuance_id", issuance_id, "request_id", rid, "municipality", mun, "certificate",
	    req->certificate, "issued_at", "2026-11-27T09:00:01Z", "subject", "card_serial", serial,
	    "digest", "00", "plugin", "name", "fujitsu-like", "version", "1.0.0", "fee", 200,
	    "pages", 1, "document", "media_type", "application/pdf", "sha256", sha, "data", data,
	    "binding", "alg", "ed25519", "key_id", spec->key_id != NULL ? spec->key_id : "doc-2026",
	    "signature", sig64);
	char *body = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	free(data);
	free(sig64);
	free(doc);
	return body;
}

/* Verifies the answer made with spec to a fresh request of the EC card; returns the status. */
static int verify_answer(const struct answer_spec *spec, struct kiosk_error *err)
{
	struct kiosk_request req;
	build(&ec_card, &req);
	char *body = make_answer(&req, spec);
	struct kiosk_issuance iss;
	int rc = kiosk_response_verify(&req, keyring, body, strlen(body), &iss, err);
	if (rc == KIOSK_VERIFY_OK) {
		assert_string_equal(iss.issuance_id, "141003-20261127-000123");
		assert_int_equal(iss.document_len, strlen(pdf));
		assert_memory_equal(iss.document, pdf, strlen(pdf));
	} else {
		assert_null(iss.document);
	}
	kiosk_issuance_free(&iss);
	free(body);
	kiosk_request_free(&req);
	return rc;
}

static void a_correctly_made_201_is_accepted_with_its_document(void **state)
{
	(void)state;
	struct answer_spec spec = {0};
	struct kiosk_error err;
	int rc = verify_answer(&spec, &err);
	if (rc != KIOSK_VERIFY_OK)
		fail_msg("rejected: %s", err.message);
}

static void an_answer_for_another_card_is_rejected(void **state)
{
	(void)state;
	/* Bound consistently by the appliance, but for another card: incident I2's shape. */
	struct answer_spec spec = {.card_serial = "A1B2C3D4"};
	struct kiosk_error err;
	assert_int_equal(verify_answer(&spec, &err), KIOSK_VERIFY_CARD_SERIAL);
	assert_non_null(strstr(err.message, "card_serial"));
}

static void a_changed_document_byte_is_rejected(void **state)
{
	(void)state;
	struct answer_spec spec = {.flip_document_byte = true};
	struct kiosk_error err;
	assert_int_equal(verify_answer(&spec, &err), KIOSK_VERIFY_DOCUMENT);
}

static void a_binding_by_another_key_is_rejected(void **state)
{
	(void)state;
	struct answer_spec spec = {.signer = other_doc_key};
	struct kiosk_error err;
	assert_int_equal(verify_answer(&spec, &err), KIOSK_VERIFY_BINDING);
	struct answer_spec unknown = {.key_id = "doc-1999"};
	assert_int_equal(verify_answer(&unknown, &err), KIOSK_VERIFY_BINDING);
	assert_non_null(strstr(err.message, "doc-1999"));
}

static void an_answer_to_another_request_id_is_rejected(void **state)
{
	(void)state;
	struct answer_spec spec = {.request_id = "11111111-2222-4333-8444-555555555555"};
	struct kiosk_error err;
	assert_int_equal(verify_answer(&spec, &err), KIOSK_VERIFY_REQUEST_ID);
}

static void another_municipality_or_a_non_pdf_is_rejected(void **state)
{
	(void)state;
	struct kiosk_error err;
	struct answer_spec mun = {.municipality = "131016"};
	assert_int_equal(verify_answer(&mun, &err), KIOSK_VERIFY_ECHO);
	struct answer_spec html = {.document = "<html>not a certificate</html>"};
	assert_int_equal(verify_answer(&html, &err), KIOSK_VERIFY_DOCUMENT);
}

static void garbage_and_missing_members_are_malformed(void **state)
{
	(void)state;
	struct kiosk_request req;
	build(&ec_card, &req);
	struct kiosk_error err;
	struct kiosk_issuance iss;
	const char *bad[] = {"", "null", "[1]", "{\"issuance_id\": \"x\"}", "{\"a\":"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(
		    kiosk_response_verify(&req, keyring, bad[i], strlen(bad[i]), &iss, &err),
		    KIOSK_VERIFY_MALFORMED);
	/* A body whose document.data is not strict base64. */
	struct answer_spec spec = {0};
	char *body = make_answer(&req, &spec);
	char *data = strstr(body, "\"data\":\"");
	assert_non_null(data);
	data[8] = '*';
	assert_int_equal(kiosk_response_verify(&req, keyring, body, strlen(body), &iss, &err),
			 KIOSK_VERIFY_MALFORMED);
	free(body);
	kiosk_request_free(&req);
}

static void keys_without_ed25519_and_problem_codes(void **state)
{
	(void)state;
	struct kiosk_keyring *kr = NULL;
	struct kiosk_error err;
	const char *none = "{\"keys\": []}";
	assert_int_equal(kiosk_keyring_parse(none, strlen(none), &kr, &err), KIOSK_ERR_INPUT);
	assert_null(kr);
	const char *broken =
	    "{\"keys\": [{\"key_id\": \"k\", \"alg\": \"ed25519\", \"public_key_pem\": \"x\"}]}";
	assert_int_equal(kiosk_keyring_parse(broken, strlen(broken), &kr, &err), KIOSK_ERR_INPUT);
	char code[32];
	const char *problem = "{\"type\": \"about:blank\", \"status\": 422, \"code\": "
			      "\"RECORD_NOT_ISSUABLE\", \"request_id\": \"r\"}";
	assert_int_equal(kiosk_problem_code(problem, strlen(problem), code, sizeof code), 0);
	assert_string_equal(code, "RECORD_NOT_ISSUABLE");
	assert_int_equal(kiosk_problem_code("<html>", 6, code, sizeof code), -1);
	assert_string_equal(code, "");
	assert_int_equal(kiosk_certificate_index("koseki-attachment"), 6);
	assert_int_equal(kiosk_certificate_index("passport"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rsa_card_signs_with_pkcs1_sha256_over_the_exact_body),
	    cmocka_unit_test(p256_card_signs_with_ecdsa_sha256_der_over_the_exact_body),
	    cmocka_unit_test(serial_is_upper_hex_without_leading_zeros),
	    cmocka_unit_test(body_carries_the_fields_of_design_4),
	    cmocka_unit_test(defaults_give_a_fresh_uuid4_and_now),
	    cmocka_unit_test(cards_load_from_files_and_a_foreign_key_is_refused),
	    cmocka_unit_test(a_correctly_made_201_is_accepted_with_its_document),
	    cmocka_unit_test(an_answer_for_another_card_is_rejected),
	    cmocka_unit_test(a_changed_document_byte_is_rejected),
	    cmocka_unit_test(a_binding_by_another_key_is_rejected),
	    cmocka_unit_test(an_answer_to_another_request_id_is_rejected),
	    cmocka_unit_test(another_municipality_or_a_non_pdf_is_rejected),
	    cmocka_unit_test(garbage_and_missing_members_are_malformed),
	    cmocka_unit_test(keys_without_ed25519_and_problem_codes),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
