/*
 * test_suslist.c: the ministry's signed suspension list (core/suslist.c, DESIGN §6).
 *
 * What must hold: a list counts only valid signatures by distinct configured keys (the same
 * key twice counts once, an unknown key id is ignored, a changed payload byte breaks the
 * signature) and is refused as LIST_SIGNATURE_INVALID below the threshold; anything not
 * exactly the documented format is LIST_MALFORMED with the field named and no value echoed;
 * omitted scope fields mean everything and mode immediate; version ranges compare dotted
 * numbers numerically; a match honours plugin, version, certificate type, municipality and,
 * for in-flight requests, the mode; an expired list still parses and says it is expired.
 *
 * Keys are generated here with OpenSSL and envelopes are built here, so the test depends on
 * nothing but the module.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "suslist.h"

#define NOW ((time_t)1795741200) /* 2026-11-27T01:00:00Z */

/* Test keys: A and B are configured, C is not. */
static EVP_PKEY *key_a, *key_b, *key_c;
static char pub_a[64], pub_b[64], pub_c[64];
static char kid_a[17], kid_b[17], kid_c[17];
static struct suslist_keyring *ring_a, *ring_ab;

/* A list with sequence 43, issued a week before it expires, holding the suspensions %s. */
#define LIST_FORMAT                                                                                \
	"{\"type\": \"madoguchi-suspension-list\", \"sequence\": 43, "                             \
	"\"issued_at\": \"2026-11-27T00:00:00Z\", \"expires_at\": \"2026-12-04T00:00:00Z\", "      \
	"\"suspensions\": [%s]}"

/* The key id by the rule of DESIGN §6, computed here independently of the module. */
static void key_id_of(EVP_PKEY *key, char out[17])
{
	unsigned char raw[32], md[32];
	size_t n = sizeof raw;
	assert_int_equal(EVP_PKEY_get_raw_public_key(key, raw, &n), 1);
	assert_int_equal(EVP_Digest(raw, n, md, NULL, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static EVP_PKEY *new_key(char *pub_path, char key_id[17])
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(key);
	strcpy(pub_path, "/tmp/test_suslist_XXXXXX");
	int fd = mkstemp(pub_path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PUBKEY(f, key), 1);
	fclose(f);
	key_id_of(key, key_id);
	return key;
}

static int setup_keys(void **state)
{
	(void)state;
	struct suslist_error err;
	key_a = new_key(pub_a, kid_a);
	key_b = new_key(pub_b, kid_b);
	key_c = new_key(pub_c, kid_c);
	const char *one[] = {pub_a};
	const char *two[] = {pub_a, pub_b};
	if (suslist_keyring_load(one, 1, &ring_a, &err) != SUSLIST_OK ||
	    suslist_keyring_load(two, 2, &ring_ab, &err) != SUSLIST_OK)
		return -1;
	return 0;
}

static int teardown_keys(void **state)
{
	(void)state;
	suslist_keyring_free(ring_a);
	suslist_keyring_free(ring_ab);
	EVP_PKEY_free(key_a);
	EVP_PKEY_free(key_b);
	EVP_PKEY_free(key_c);
	unlink(pub_a);
	unlink(pub_b);
	unlink(pub_c);
	return 0;
}

static char *b64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	assert_non_null(out);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/* One signature to put in an envelope: by key, announced as key_id. */
struct signer {
	EVP_PKEY *key;
	const char *key_id;
};

/*
 * The envelope for payload, signed by each signer over signed_payload (the payload itself
 * when NULL: a different value makes a signature over other bytes).  Caller frees.
 */
static char *envelope(const char *payload, const char *signed_payload, const struct signer *s,
		      size_t n)
{
	const char *what = signed_payload ? signed_payload : payload;
	json_t *sigs = json_array();
	for (size_t i = 0; i < n; i++) {
		unsigned char sig[64];
		size_t sig_len = sizeof sig;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, s[i].key), 1);
		assert_int_equal(
		    EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)what, strlen(what)),
		    1);
		EVP_MD_CTX_free(ctx);
		char *sig64 = b64(sig, sig_len);
		json_array_append_new(sigs, json_pack("{s:s, s:s, s:s}", "key_id", s[i].key_id,
						      "alg", "ed25519", "sig", sig64));
		free(sig64);
	}
	char *p64 = b64((const unsigned char *)payload, strlen(payload));
	json_t *env = json_pack("{s:s, s:o}", "payload", p64, "signatures", sigs);
	free(p64);
	char *text = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	assert_non_null(text);
	return text;
}

/* Parses text with keys and threshold; returns the status, *out the list or NULL. */
static int parse(const struct suslist_keyring *keys, unsigned threshold, const char *text,
		 struct suslist **out, struct suslist_error *err)
{
	return suslist_parse_verify(keys, threshold, text, strlen(text), NOW, out, err);
}

/* The list JSON with these suspension objects, signed by A, parsed with ring_a threshold 1. */
static int parse_signed_by_a(const char *list_json, struct suslist **out, struct suslist_error *err)
{
	struct signer a = {key_a, kid_a};
	char *env = envelope(list_json, NULL, &a, 1);
	int rc = parse(ring_a, 1, env, out, err);
	free(env);
	return rc;
}

static char *list_with(const char *suspensions)
{
	size_t n = strlen(LIST_FORMAT) + strlen(suspensions) + 1;
	char *text = malloc(n);
	assert_non_null(text);
	snprintf(text, n, LIST_FORMAT, suspensions);
	return text;
}

static const char *const one_suspension =
    "{\"id\": \"2026-0043\", \"plugin\": \"fujitsu-like\", \"versions\": \"<2.3.1\", "
    "\"certificates\": [\"seal\", \"residence\"], \"municipalities\": [\"141003\"], "
    "\"mode\": \"drain\", \"reason\": \"wrong certificates printed under load\"}";

static void valid_list_signed_by_one_key_verifies_with_threshold_1(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with(one_suspension);
	struct signer a = {key_a, kid_a};
	char *env = envelope(json, NULL, &a, 1);

	assert_int_equal(parse(ring_a, 1, env, &list, &err), SUSLIST_OK);
	assert_non_null(list);
	assert_true(suslist_sequence(list) == 43);
	assert_true(suslist_issued_at(list) == 1795737600);  /* 2026-11-27T00:00:00Z */
	assert_true(suslist_expires_at(list) == 1796342400); /* 2026-12-04T00:00:00Z */
	assert_true(suslist_verified_at(list) == NOW);
	assert_false(suslist_expired(list, NOW));
	assert_int_equal(suslist_count(list), 1);
	const struct suslist_entry *e = suslist_entry_at(list, 0);
	assert_string_equal(suslist_entry_id(e), "2026-0043");
	assert_string_equal(suslist_entry_plugin(e), "fujitsu-like");
	assert_string_equal(suslist_entry_versions(e), "<2.3.1");
	assert_int_equal(suslist_entry_mode(e), SUSLIST_DRAIN);
	assert_string_equal(suslist_entry_reason(e), "wrong certificates printed under load");
	assert_int_equal(suslist_entry_certificate_count(e), 2);
	assert_string_equal(suslist_entry_certificate(e, 0), "seal");
	assert_string_equal(suslist_entry_certificate(e, 1), "residence");
	assert_int_equal(suslist_entry_municipality_count(e), 1);
	assert_string_equal(suslist_entry_municipality(e, 0), "141003");
	assert_null(suslist_entry_at(list, 1));

	/* The exact signed bytes are kept, for the caller to persist and parse again. */
	size_t raw_len = 0;
	const char *raw = suslist_raw(list, &raw_len);
	assert_int_equal(raw_len, strlen(env));
	assert_memory_equal(raw, env, raw_len);
	struct suslist *again = NULL;
	assert_int_equal(suslist_parse_verify(ring_a, 1, raw, raw_len, NOW, &again, &err),
			 SUSLIST_OK);
	assert_true(suslist_sequence(again) == 43);
	suslist_free(again);

	/* The key id follows DESIGN §6, as the keyring reports it. */
	assert_int_equal(suslist_keyring_count(ring_ab), 2);
	assert_string_equal(suslist_keyring_key_id(ring_ab, 0), kid_a);
	assert_string_equal(suslist_keyring_key_id(ring_ab, 1), kid_b);

	suslist_free(list);
	free(env);
	free(json);
}

static void threshold_2_with_one_valid_signature_is_signature_invalid(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with(one_suspension);
	struct signer a = {key_a, kid_a};
	char *env = envelope(json, NULL, &a, 1);
	assert_int_equal(parse(ring_ab, 2, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	assert_null(list);
	assert_string_equal(suslist_status_code(SUSLIST_SIGNATURE_INVALID),
			    "LIST_SIGNATURE_INVALID");
	assert_int_equal(suslist_status_http(SUSLIST_SIGNATURE_INVALID), 401);
	assert_non_null(strstr(err.message, "1 valid signature"));
	free(env);

	/* Both configured keys: accepted. */
	struct signer ab[] = {{key_a, kid_a}, {key_b, kid_b}};
	env = envelope(json, NULL, ab, 2);
	assert_int_equal(parse(ring_ab, 2, env, &list, &err), SUSLIST_OK);
	suslist_free(list);
	/* A threshold above the number of keys can never be met. */
	assert_int_equal(parse(ring_ab, 3, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	/* Threshold 0 would accept an unsigned list: refused as a configuration error. */
	assert_int_equal(parse(ring_ab, 0, env, &list, &err), SUSLIST_ERROR);
	assert_null(list);
	free(env);
	free(json);
}

static void two_signatures_by_the_same_key_count_once(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with(one_suspension);
	struct signer aa[] = {{key_a, kid_a}, {key_a, kid_a}};
	char *env = envelope(json, NULL, aa, 2);
	assert_int_equal(parse(ring_ab, 2, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	assert_null(list);
	assert_int_equal(parse(ring_ab, 1, env, &list, &err), SUSLIST_OK);
	suslist_free(list);
	free(env);
	free(json);
}

static void a_signature_by_an_unknown_key_id_is_ignored(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with(one_suspension);

	/* C is not configured: its signature neither counts nor spoils A's. */
	struct signer ca[] = {{key_c, kid_c}, {key_a, kid_a}};
	char *env = envelope(json, NULL, ca, 2);
	assert_int_equal(parse(ring_a, 1, env, &list, &err), SUSLIST_OK);
	suslist_free(list);
	assert_int_equal(parse(ring_ab, 2, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	free(env);

	/* C's signature alone: nothing counts. */
	struct signer c = {key_c, kid_c};
	env = envelope(json, NULL, &c, 1);
	assert_int_equal(parse(ring_a, 1, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	free(env);

	/* C's signature announced under A's key id does not verify with A's key. */
	struct signer c_as_a = {key_c, kid_a};
	env = envelope(json, NULL, &c_as_a, 1);
	assert_int_equal(parse(ring_a, 1, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	assert_null(list);
	free(env);
	free(json);
}

static void one_changed_payload_byte_fails_the_signature(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with(one_suspension);
	char *tampered = strdup(json);
	assert_non_null(tampered);
	char *digit = strstr(tampered, "43");
	assert_non_null(digit);
	digit[0] = '9'; /* sequence 93: a well-formed list, not the one that was signed */

	struct signer a = {key_a, kid_a};
	char *env = envelope(tampered, json, &a, 1);
	assert_int_equal(parse(ring_a, 1, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	assert_null(list);
	free(env);

	/* One flipped bit anywhere in the payload, including whitespace, fails too. */
	tampered[strlen(tampered) - 1] ^= 0x01;
	env = envelope(tampered, json, &a, 1);
	assert_int_equal(parse(ring_a, 1, env, &list, &err), SUSLIST_SIGNATURE_INVALID);
	free(env);
	free(tampered);
	free(json);
}

/* Asserts that the signed list JSON text is refused as MALFORMED naming field. */
static void expect_malformed(const char *list_json, const char *field)
{
	struct suslist *list = NULL;
	struct suslist_error err;
	memset(&err, 0, sizeof err);
	int rc = parse_signed_by_a(list_json, &list, &err);
	if (rc != SUSLIST_MALFORMED || strcmp(err.field, field) != 0)
		fail_msg("list %s: got %d field \"%s\" (%s), want MALFORMED field \"%s\"",
			 list_json, rc, err.field, err.message, field);
	assert_null(list);
	assert_true(strlen(err.message) > 0);
}

static void malformed_lists_are_refused_as_list_malformed(void **state)
{
	(void)state;
	char *json;
	assert_string_equal(suslist_status_code(SUSLIST_MALFORMED), "LIST_MALFORMED");
	assert_int_equal(suslist_status_http(SUSLIST_MALFORMED), 400);

	/* Signed, but not JSON, or not the list. */
	expect_malformed("{\"type\": \"madoguchi-suspension-list\",", "");
	expect_malformed("[]", "");
	expect_malformed("{\"type\": \"madoguchi-suspension-list\", \"sequence\": 1, \"sequence\": "
			 "2, \"issued_at\": \"2026-11-27T00:00:00Z\", \"expires_at\": "
			 "\"2026-12-04T00:00:00Z\", \"suspensions\": []}",
			 "");
	/* Wrong type. */
	expect_malformed("{\"type\": \"madoguchi-other\", \"sequence\": 1, \"issued_at\": "
			 "\"2026-11-27T00:00:00Z\", \"expires_at\": \"2026-12-04T00:00:00Z\", "
			 "\"suspensions\": []}",
			 "type");
	/* Unknown fields at every level. */
	expect_malformed(
	    "{\"type\": \"madoguchi-suspension-list\", \"sequence\": 1, \"issued_at\": "
	    "\"2026-11-27T00:00:00Z\", \"expires_at\": \"2026-12-04T00:00:00Z\", "
	    "\"suspensions\": [], \"comment\": \"x\"}",
	    "comment");
	json = list_with("{\"id\": \"x\", \"plugin\": \"fujitsu-like\", \"scope\": \"all\"}");
	expect_malformed(json, "suspensions[0].scope");
	free(json);

	/* Bad sequences: negative, beyond 2^64-1, with a fraction or exponent, a string. */
	static const char *const bad_sequences[] = {"-1",
						    "18446744073709551616",
						    "99999999999999999999999",
						    "43.0",
						    "4.3e1",
						    "\"43\"",
						    "true",
						    "null"};
	for (size_t i = 0; i < sizeof bad_sequences / sizeof bad_sequences[0]; i++) {
		char text[512];
		snprintf(text, sizeof text,
			 "{\"type\": \"madoguchi-suspension-list\", \"sequence\": %s, "
			 "\"issued_at\": \"2026-11-27T00:00:00Z\", \"expires_at\": "
			 "\"2026-12-04T00:00:00Z\", \"suspensions\": []}",
			 bad_sequences[i]);
		expect_malformed(text, "sequence");
	}

	/* Missing or badly typed fields of a suspension. */
	json = list_with("{\"id\": \"x\"}");
	expect_malformed(json, "suspensions[0].plugin");
	free(json);
	json = list_with("{\"plugin\": \"fujitsu-like\"}");
	expect_malformed(json, "suspensions[0].id");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"Fujitsu Like\"}");
	expect_malformed(json, "suspensions[0].plugin");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"certificates\": [\"passport\"]}");
	expect_malformed(json, "suspensions[0].certificates[0]");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"certificates\": []}");
	expect_malformed(json, "suspensions[0].certificates");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"municipalities\": [\"14100\"]}");
	expect_malformed(json, "suspensions[0].municipalities[0]");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"municipalities\": \"*\"}");
	expect_malformed(json, "suspensions[0].municipalities");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"mode\": \"later\"}");
	expect_malformed(json, "suspensions[0].mode");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"versions\": \"~2.3\"}");
	expect_malformed(json, "suspensions[0].versions");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"versions\": \">=1.0.0,\"}");
	expect_malformed(json, "suspensions[0].versions");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\"}, {\"id\": \"x\", \"plugin\": \"q\"}");
	expect_malformed(json, "suspensions[1]");
	free(json);

	/* Times: RFC 3339 UTC only, real dates, expiry after issue. */
	expect_malformed(
	    "{\"type\": \"madoguchi-suspension-list\", \"sequence\": 1, \"issued_at\": "
	    "\"2026-02-30T00:00:00Z\", \"expires_at\": \"2026-12-04T00:00:00Z\", "
	    "\"suspensions\": []}",
	    "issued_at");
	expect_malformed(
	    "{\"type\": \"madoguchi-suspension-list\", \"sequence\": 1, \"issued_at\": "
	    "\"2026-11-27T00:00:00Z\", \"expires_at\": \"2026-12-04T09:00:00+09:00\", "
	    "\"suspensions\": []}",
	    "expires_at");
	expect_malformed(
	    "{\"type\": \"madoguchi-suspension-list\", \"sequence\": 1, \"issued_at\": "
	    "\"2026-11-27T00:00:00Z\", \"expires_at\": \"2026-11-26T00:00:00Z\", "
	    "\"suspensions\": []}",
	    "expires_at");
}

static void malformed_envelopes_are_refused_as_list_malformed(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with(one_suspension);
	struct signer a = {key_a, kid_a};
	char *env = envelope(json, NULL, &a, 1);
	json_t *good = json_loads(env, 0, NULL);
	assert_non_null(good);

	assert_int_equal(parse(ring_a, 1, "{\"payload\": ", &list, &err), SUSLIST_MALFORMED);
	assert_int_equal(parse(ring_a, 1, "", &list, &err), SUSLIST_MALFORMED);

	/* An unknown envelope field. */
	json_t *j = json_deep_copy(good);
	json_object_set_new(j, "note", json_string("x"));
	char *text = json_dumps(j, JSON_COMPACT);
	assert_int_equal(parse(ring_a, 1, text, &list, &err), SUSLIST_MALFORMED);
	assert_string_equal(err.field, "note");
	free(text);
	json_decref(j);

	/* Payload not canonical base64: line break, missing padding. */
	const char *p64 = json_string_value(json_object_get(good, "payload"));
	char *broken = malloc(strlen(p64) + 2);
	assert_non_null(broken);
	snprintf(broken, strlen(p64) + 2, "%.4s\n%s", p64, p64 + 4);
	j = json_deep_copy(good);
	json_object_set_new(j, "payload", json_string(broken));
	text = json_dumps(j, JSON_COMPACT);
	assert_int_equal(parse(ring_a, 1, text, &list, &err), SUSLIST_MALFORMED);
	assert_string_equal(err.field, "payload");
	free(text);
	json_decref(j);
	free(broken);

	/* Another algorithm, a key id that is not 16 lower-case hex, a short signature. */
	static const char *const sig_fields[][2] = {{"alg", "ecdsa-p256"},
						    {"key_id", "ABCDEF0123456789"},
						    {"key_id", "abc"},
						    {"sig", "AAAA"}};
	for (size_t i = 0; i < 4; i++) {
		j = json_deep_copy(good);
		json_t *sig = json_array_get(json_object_get(j, "signatures"), 0);
		json_object_set_new(sig, sig_fields[i][0], json_string(sig_fields[i][1]));
		text = json_dumps(j, JSON_COMPACT);
		assert_int_equal(parse(ring_a, 1, text, &list, &err), SUSLIST_MALFORMED);
		char want[64];
		snprintf(want, sizeof want, "signatures[0].%s", sig_fields[i][0]);
		assert_string_equal(err.field, want);
		free(text);
		json_decref(j);
	}
	assert_null(list);
	json_decref(good);
	free(env);
	free(json);
}

static void errors_name_the_field_and_never_echo_long_values(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"reason\": "
			       "\"SECRET-VALUE-0123456789 line\\nbreak\"}");
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_MALFORMED);
	assert_string_equal(err.field, "suspensions[0].reason");
	assert_null(strstr(err.message, "SECRET"));
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"SECRET-VALUE-0123456789\": 1}");
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_MALFORMED);
	assert_string_equal(err.field, "suspensions[0].SECRET-VALUE-0123456789");
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"key with spaces SECRET\": 1}");
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_MALFORMED);
	assert_string_equal(err.field, "suspensions[0]");
	assert_null(strstr(err.message, "SECRET"));
	free(json);
	json = list_with("{\"id\": \"x\", \"plugin\": \"p\", \"versions\": \"<SECRET\"}");
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_MALFORMED);
	assert_null(strstr(err.message, "SECRET"));
	assert_null(list);
	free(json);
}

static void sequence_covers_the_whole_unsigned_64_bit_range(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint64_t value;
	} cases[] = {{"0", 0},
		     {"9223372036854775807", 9223372036854775807u},
		     {"9223372036854775808", 9223372036854775808u},
		     {"18446744073709551615", UINT64_MAX}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[512];
		struct suslist *list = NULL;
		struct suslist_error err;
		snprintf(
		    text, sizeof text,
		    "{\"suspensions\": [], \"seq\\u0075ence\": %s, \"type\": "
		    "\"madoguchi-suspension-list\", \"issued_at\": \"2026-11-27T00:00:00.5Z\", "
		    "\"expires_at\": \"2026-12-04T00:00:00Z\"}",
		    cases[i].text);
		assert_int_equal(parse_signed_by_a(text, &list, &err), SUSLIST_OK);
		assert_true(suslist_sequence(list) == cases[i].value);
		assert_int_equal(suslist_count(list), 0);
		suslist_free(list);
	}
}

static void omitted_scope_means_every_type_every_municipality_immediate(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	char *json = list_with("{\"id\": \"all\", \"plugin\": \"fujitsu-like\"}");
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_OK);
	const struct suslist_entry *e = suslist_entry_at(list, 0);
	assert_null(suslist_entry_versions(e));
	assert_int_equal(suslist_entry_certificate_count(e), 1);
	assert_string_equal(suslist_entry_certificate(e, 0), "*");
	assert_int_equal(suslist_entry_municipality_count(e), 1);
	assert_string_equal(suslist_entry_municipality(e, 0), "*");
	assert_int_equal(suslist_entry_mode(e), SUSLIST_IMMEDIATE);
	assert_string_equal(suslist_entry_reason(e), "");

	/* Every version, type and municipality, new and in flight. */
	assert_true(suslist_match(list, "fujitsu-like", "9.9.9", "koseki-attachment", "011002",
				  true, NULL));
	assert_true(suslist_match(list, "fujitsu-like", "0.1", "seal", "141003", false, NULL));
	assert_false(
	    suslist_match(list, "sqlite-registry", "1.0.0", "seal", "141003", false, NULL));
	suslist_free(list);
	free(json);
}

static void version_ranges_compare_dotted_numbers_numerically(void **state)
{
	(void)state;
	assert_true(suslist_version_matches("<2.3.1", "2.3.0"));
	assert_true(suslist_version_matches("<2.3.1", "1.9"));
	assert_false(suslist_version_matches("<2.3.1", "2.3.1"));
	assert_false(suslist_version_matches("<2.3.1", "2.3.1.0"));
	assert_true(suslist_version_matches("<2.3.1", "2.3.0.99"));

	assert_true(suslist_version_matches(">=1.0.0,<2.3.1", "1.0.0"));
	assert_true(suslist_version_matches(">=1.0.0,<2.3.1", "1"));
	assert_true(suslist_version_matches(">=1.0.0, <2.3.1", "2.2.99"));
	assert_false(suslist_version_matches(">=1.0.0,<2.3.1", "0.9.9"));
	assert_false(suslist_version_matches(">=1.0.0,<2.3.1", "2.3.1"));

	assert_true(suslist_version_matches("=1.2", "1.2.0"));
	assert_true(suslist_version_matches("==1.2", "1.2"));
	assert_true(suslist_version_matches("1.2", "01.2.0.0"));
	assert_false(suslist_version_matches("=1.2", "1.2.1"));
	assert_true(suslist_version_matches("<=1.2", "1.2"));
	assert_true(suslist_version_matches(">1.2", "1.2.0.1"));

	/* 2.10 is after 2.9: numbers, not text. */
	assert_true(suslist_version_matches(">2.9", "2.10"));
	assert_false(suslist_version_matches("<2.9", "2.10"));
	assert_true(
	    suslist_version_matches("<100000000000000000000001", "100000000000000000000000"));

	/* A version that cannot be ordered is inside every range: never escapes a suspension. */
	assert_true(suslist_version_matches("<1.0", "2.3.1-rc1"));
	assert_true(suslist_version_matches("<1.0", NULL));
	/* An invalid range matches nothing (a parsed list never holds one). */
	assert_false(suslist_version_matches("<", "1.0"));
	assert_false(suslist_version_matches("!=1.0", "2.0"));
	assert_false(suslist_version_matches("1..0", "1.0"));
}

static void match_honours_plugin_version_certificate_municipality_and_mode(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	const struct suslist_entry *e;
	char *json = list_with(
	    "{\"id\": \"drain-seal\", \"plugin\": \"fujitsu-like\", \"versions\": "
	    "\">=1.0.0,<2.3.1\", \"certificates\": [\"seal\", \"residence\"], "
	    "\"municipalities\": [\"141003\", \"141011\"], \"mode\": \"drain\", \"reason\": "
	    "\"r1\"}, {\"id\": \"now-koseki\", \"plugin\": \"fujitsu-like\", \"certificates\": "
	    "[\"koseki-full\"], \"mode\": \"immediate\", \"reason\": \"r2\"}, {\"id\": "
	    "\"drain-all\", \"plugin\": \"sqlite-registry\", \"mode\": \"drain\"}, {\"id\": "
	    "\"now-all\", \"plugin\": \"sqlite-registry\", \"municipalities\": [\"011002\"]}");
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_OK);
	assert_int_equal(suslist_count(list), 4);

	/* Inside every part of the scope. */
	assert_true(suslist_match(list, "fujitsu-like", "2.3.0", "seal", "141003", false, &e));
	assert_string_equal(suslist_entry_id(e), "drain-seal");
	/* Drain does not stop an issuance already past step 7. */
	assert_false(suslist_match(list, "fujitsu-like", "2.3.0", "seal", "141003", true, &e));
	assert_null(e);
	/* Outside the version range, the types, the municipalities, the plugin. */
	assert_false(suslist_match(list, "fujitsu-like", "2.3.1", "seal", "141003", false, NULL));
	assert_false(
	    suslist_match(list, "fujitsu-like", "2.3.0", "tax-income", "141003", false, NULL));
	assert_false(suslist_match(list, "fujitsu-like", "2.3.0", "seal", "131016", false, NULL));
	assert_false(suslist_match(list, "other-plugin", "2.3.0", "seal", "141003", false, NULL));
	/* An immediate suspension stops in-flight deliveries too. */
	assert_true(suslist_match(list, "fujitsu-like", "3.0", "koseki-full", "131016", true, &e));
	assert_string_equal(suslist_entry_id(e), "now-koseki");
	assert_string_equal(suslist_entry_reason(e), "r2");
	/* Where a drain and an immediate suspension both match, the immediate one is named. */
	assert_true(suslist_match(list, "sqlite-registry", "1.0.0", "seal", "011002", false, &e));
	assert_string_equal(suslist_entry_id(e), "now-all");
	assert_true(suslist_match(list, "sqlite-registry", "1.0.0", "seal", "141003", false, &e));
	assert_string_equal(suslist_entry_id(e), "drain-all");
	assert_false(suslist_match(list, "sqlite-registry", "1.0.0", "seal", "141003", true, &e));
	suslist_free(list);
	free(json);
}

static void an_expired_list_parses_and_says_it_is_expired(void **state)
{
	(void)state;
	struct suslist *list = NULL;
	struct suslist_error err;
	const char *json =
	    "{\"type\": \"madoguchi-suspension-list\", \"sequence\": 7, \"issued_at\": "
	    "\"2025-01-01T00:00:00Z\", \"expires_at\": \"2025-01-08T00:00:00.999Z\", "
	    "\"suspensions\": [{\"id\": \"old\", \"plugin\": \"fujitsu-like\"}]}";
	assert_int_equal(parse_signed_by_a(json, &list, &err), SUSLIST_OK);
	assert_true(suslist_expired(list, NOW));
	assert_true(suslist_expired(list, suslist_expires_at(list)));
	assert_false(suslist_expired(list, suslist_expires_at(list) - 1));
	/* Still enforced: expiry never lifts a suspension. */
	assert_true(suslist_match(list, "fujitsu-like", "1.0.0", "seal", "141003", true, NULL));
	suslist_free(list);
}

static void keyring_refuses_missing_non_ed25519_and_repeated_keys(void **state)
{
	(void)state;
	struct suslist_keyring *ring = NULL;
	struct suslist_error err;

	const char *missing[] = {"/nonexistent/ministry.pub"};
	assert_int_equal(suslist_keyring_load(missing, 1, &ring, &err), SUSLIST_ERROR);
	assert_non_null(strstr(err.message, "/nonexistent/ministry.pub"));
	assert_null(ring);

	const char *twice[] = {pub_a, pub_b, pub_a};
	assert_int_equal(suslist_keyring_load(twice, 3, &ring, &err), SUSLIST_ERROR);
	assert_non_null(strstr(err.message, "same key"));
	assert_null(ring);

	assert_int_equal(suslist_keyring_load(NULL, 0, &ring, &err), SUSLIST_ERROR);

	char ec_path[64] = "/tmp/test_suslist_ec_XXXXXX";
	int fd = mkstemp(ec_path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(ec);
	assert_int_equal(PEM_write_PUBKEY(f, ec), 1);
	fclose(f);
	EVP_PKEY_free(ec);
	const char *ec_paths[] = {pub_a, ec_path};
	assert_int_equal(suslist_keyring_load(ec_paths, 2, &ring, &err), SUSLIST_ERROR);
	assert_non_null(strstr(err.message, "not an Ed25519 key"));
	assert_null(ring);
	unlink(ec_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(valid_list_signed_by_one_key_verifies_with_threshold_1),
	    cmocka_unit_test(threshold_2_with_one_valid_signature_is_signature_invalid),
	    cmocka_unit_test(two_signatures_by_the_same_key_count_once),
	    cmocka_unit_test(a_signature_by_an_unknown_key_id_is_ignored),
	    cmocka_unit_test(one_changed_payload_byte_fails_the_signature),
	    cmocka_unit_test(malformed_lists_are_refused_as_list_malformed),
	    cmocka_unit_test(malformed_envelopes_are_refused_as_list_malformed),
	    cmocka_unit_test(errors_name_the_field_and_never_echo_long_values),
	    cmocka_unit_test(sequence_covers_the_whole_unsigned_64_bit_range),
	    cmocka_unit_test(omitted_scope_means_every_type_every_municipality_immediate),
	    cmocka_unit_test(version_ranges_compare_dotted_numbers_numerically),
	    cmocka_unit_test(match_honours_plugin_version_certificate_municipality_and_mode),
	    cmocka_unit_test(an_expired_list_parses_and_says_it_is_expired),
	    cmocka_unit_test(keyring_refuses_missing_non_ed25519_and_repeated_keys),
	};
	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
