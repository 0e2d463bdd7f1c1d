/*
 * suslist.c: the ministry's signed suspension list (contract in suslist.h).
 *
 * Three passes over the bytes, each refusing before the next one starts: the envelope (jansson,
 * JSON_REJECT_DUPLICATES; strict base64 decoded here), the signatures (OpenSSL one-shot
 * EVP_DigestVerify with Ed25519, one EVP_MD_CTX per call, so the shared immutable EVP_PKEYs are
 * safe across threads), then the payload.  jansson holds integers in a signed 64-bit
 * json_int_t and refuses anything above 2^63-1, so before the payload goes to jansson a small
 * scanner finds the raw token of the top-level "sequence", parses it here as an unsigned
 * 64-bit integer and writes "0" over it in a private copy; jansson remains the judge of the
 * JSON itself.  Error texts are built only from field names this file knows and from
 * positions (jansson's own messages quote the input and are never passed on).
 *
 * The result owns copies of everything it holds (no jansson tree is kept), is immutable, and
 * may be read by any number of threads.  No state outside a call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ossl.h"
#include "suslist.h"

#define SUSLIST_TYPE	   "madoguchi-suspension-list"
#define SUSLIST_SIG_LEN	   64 /* bytes of an Ed25519 signature */
#define SUSLIST_PARENT_MAX 40 /* "suspensions[N]" */
#define SUSLIST_PATH_MAX   64 /* a parent, ".", a key this file knows */
#define SUSLIST_CERT_TYPES 7

struct suslist_key {
	EVP_PKEY *key;
	char key_id[SUSLIST_KEY_ID_LEN + 1];
};

struct suslist_keyring {
	size_t n;
	struct suslist_key keys[];
};

struct suslist_entry {
	char id[SUSLIST_ID_MAX + 1];
	char plugin[SUSLIST_PLUGIN_MAX + 1];
	char versions[SUSLIST_VERSIONS_MAX + 1];
	bool has_versions;
	enum suslist_mode mode;
	char reason[SUSLIST_REASON_MAX + 1];
	size_t n_certs;
	const char *certs[SUSLIST_CERT_TYPES]; /* static names; {"*"} for every type */
	size_t n_munis;
	char (*munis)[SUSLIST_MUNICIPALITY_LEN + 1]; /* {"*"} for every municipality */
};

struct suslist {
	uint64_t sequence;
	time_t issued_at;
	time_t expires_at;
	time_t verified_at;
	size_t n;
	struct suslist_entry *entries;
	char *raw; /* the signed bytes, NUL-terminated */
	size_t raw_len;
};

/* The certificate types of DESIGN §4 (a local copy: this module links with ossl.c only). */
static const char *const sus_cert_types[SUSLIST_CERT_TYPES] = {
    "residence",	 "residence-record", "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment"};
static const char *const sus_star = "*";

static const char *const sus_envelope_keys[] = {"payload", "signatures", NULL};
static const char *const sus_signature_keys[] = {"key_id", "alg", "sig", NULL};
static const char *const sus_list_keys[] = {"type",	  "sequence",	 "issued_at",
					    "expires_at", "suspensions", NULL};
static const char *const sus_entry_keys[] = {
    "id", "plugin", "versions", "certificates", "municipalities", "mode", "reason", NULL};

static const char sus_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Copies src (NULL: "") into dst[size], cut short when longer. */
static void sus_copy(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	while (src != NULL && n + 1 < size && src[n] != '\0') {
		dst[n] = src[n];
		n++;
	}
	dst[n] = '\0';
}

/*
 * Fills err (when given) and returns status.  field, message and sus_failf()'s arguments are
 * built by this file or come from the configuration (key file paths), never from a list.
 */
static int sus_fail(struct suslist_error *err, int status, const char *field, const char *message)
{
	if (err != NULL) {
		sus_copy(err->field, sizeof err->field, field);
		sus_copy(err->message, sizeof err->message, message);
	}
	return status;
}

__attribute__((format(printf, 4, 5))) static int sus_failf(struct suslist_error *err, int status,
							   const char *field, const char *fmt, ...)
{
	if (err != NULL) {
		sus_copy(err->field, sizeof err->field, field);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return status;
}

/* ---- keyring ------------------------------------------------------------------------------ */

int suslist_keyring_load(const char *const *pub_paths, size_t n, struct suslist_keyring **out,
			 struct suslist_error *err)
{
	*out = NULL;
	if (n == 0)
		return sus_fail(err, SUSLIST_ERROR, "", "no ministry public key is configured");
	struct suslist_keyring *ring = calloc(1, sizeof *ring + n * sizeof ring->keys[0]);
	if (ring == NULL)
		return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	for (size_t i = 0; i < n; i++) {
		const char *path = pub_paths[i];
		FILE *f = fopen(path, "r");
		if (f == NULL) {
			suslist_keyring_free(ring);
			return sus_failf(err, SUSLIST_ERROR, "",
					 "cannot open the ministry public key file %s", path);
		}
		EVP_PKEY *key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
		fclose(f);
		ERR_clear_error();
		if (key == NULL) {
			suslist_keyring_free(ring);
			return sus_failf(
			    err, SUSLIST_ERROR, "",
			    "%s is not a PEM public key (SubjectPublicKeyInfo; make one "
			    "with `openssl pkey -in NAME.key -pubout`)",
			    path);
		}
		struct suslist_key *k = &ring->keys[ring->n];
		k->key = key;
		ring->n++; /* owned by the ring from here, freed with it */
		if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
			suslist_keyring_free(ring);
			return sus_failf(
			    err, SUSLIST_ERROR, "",
			    "%s is not an Ed25519 key (the ministry signs with Ed25519)", path);
		}
		if (ossl_ed25519_key_id(key, k->key_id) != 0) {
			suslist_keyring_free(ring);
			return sus_failf(err, SUSLIST_ERROR, "", "cannot read the public key in %s",
					 path);
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(ring->keys[j].key_id, k->key_id) == 0) {
				int rc =
				    sus_failf(err, SUSLIST_ERROR, "",
					      "%s and %s hold the same key (key id %s): list "
					      "each ministry key once, or the threshold counts "
					      "one key twice",
					      pub_paths[j], path, k->key_id);
				suslist_keyring_free(ring);
				return rc;
			}
		}
	}
	*out = ring;
	return SUSLIST_OK;
}

void suslist_keyring_free(struct suslist_keyring *keys)
{
	if (keys == NULL)
		return;
	for (size_t i = 0; i < keys->n; i++)
		EVP_PKEY_free(keys->keys[i].key);
	free(keys);
}

size_t suslist_keyring_count(const struct suslist_keyring *keys)
{
	return keys->n;
}

const char *suslist_keyring_key_id(const struct suslist_keyring *keys, size_t i)
{
	return i < keys->n ? keys->keys[i].key_id : NULL;
}

/* ---- small parsers ------------------------------------------------------------------------ */

/*
 * Decodes standard padded base64 of exactly n characters into a new buffer (*out, *out_len;
 * NUL-terminated after the data for convenience).  Canonical spelling only: length a multiple
 * of 4, '=' only as the last one or two characters, unused bits zero.  0, or -1 when the text
 * is not such base64, -2 when out of memory.
 */
static int sus_b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (n % 4 != 0)
		return -1;
	size_t pad = 0;
	if (n >= 4 && s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	unsigned char *buf = malloc(n / 4 * 3 + 1);
	if (buf == NULL)
		return -2;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		unsigned v = 0;
		size_t used = i + 4 == n ? 4 - pad : 4;
		for (size_t j = 0; j < 4; j++) {
			unsigned d = 0;
			if (j < used) {
				const char *p = s[i + j] != '\0' ? strchr(sus_b64, s[i + j]) : NULL;
				if (p == NULL) {
					free(buf);
					return -1;
				}
				d = (unsigned)(p - sus_b64);
			}
			v = v << 6 | d;
		}
		/* Bits beyond the data in the last group must be zero (one spelling per value). */
		if ((used == 3 && (v & 0xffu) != 0) || (used == 2 && (v & 0xffffu) != 0)) {
			free(buf);
			return -1;
		}
		buf[o++] = (unsigned char)(v >> 16);
		if (used >= 3)
			buf[o++] = (unsigned char)(v >> 8);
		if (used == 4)
			buf[o++] = (unsigned char)v;
	}
	buf[o] = '\0';
	*out = buf;
	*out_len = o;
	return 0;
}

static int sus_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Parses an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.1-9 digits]Z" of exactly n bytes, years
 * 1970..9999, no leap second; the fraction is dropped.  0 with *out, or -1.
 */
static int sus_parse_time(const char *s, size_t n, time_t *out)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (n < sizeof shape || s[n - 1] != 'Z')
		return -1;
	for (size_t i = 0; i + 1 < sizeof shape; i++) {
		if (shape[i] == 'd' ? !sus_is_digit(s[i]) : s[i] != shape[i])
			return -1;
	}
	size_t frac = n - sizeof shape; /* characters between the seconds and 'Z' */
	if (frac == 1 || frac > 10 || (frac > 0 && s[sizeof shape - 1] != '.'))
		return -1;
	for (size_t i = sizeof shape; i + 1 < n; i++) {
		if (!sus_is_digit(s[i]))
			return -1;
	}
#define SUS_NUM2(p) ((long)((p)[0] - '0') * 10 + ((p)[1] - '0'))
	long year = SUS_NUM2(s) * 100 + SUS_NUM2(s + 2);
	long mon = SUS_NUM2(s + 5), day = SUS_NUM2(s + 8);
	long hour = SUS_NUM2(s + 11), min = SUS_NUM2(s + 14), sec = SUS_NUM2(s + 17);
#undef SUS_NUM2
	if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 59)
		return -1;
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (day > mdays[mon - 1] + (mon == 2 && leap))
		return -1;
	/* Days since 1970-01-01 (H. Hinnant's days_from_civil; year >= 1970 keeps it simple). */
	long y = mon <= 2 ? year - 1 : year;
	long era = y / 400, yoe = y - era * 400;
	long doy = (153 * (mon > 2 ? mon - 3 : mon + 9) + 2) / 5 + day - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	long days = era * 146097 + doe - 719468;
	*out = (time_t)days * 86400 + hour * 3600 + min * 60 + sec;
	return 0;
}

/* A dotted number: digits ('.' digits)*, exactly n bytes. */
static bool sus_dotted_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	bool digit_before = false;
	for (size_t i = 0; i < n; i++) {
		if (sus_is_digit(s[i])) {
			digit_before = true;
		} else if (s[i] == '.' && digit_before) {
			digit_before = false;
		} else {
			return false;
		}
	}
	return digit_before;
}

/*
 * Compares two dotted numbers (sus_dotted_ok) component by component as unsigned integers of
 * any length, missing components as 0.  <0, 0, >0.
 */
static int sus_dotted_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, j = 0;
	while (i < an || j < bn) {
		size_t ai = i, bj = j;
		while (i < an && a[i] != '.')
			i++;
		while (j < bn && b[j] != '.')
			j++;
		/* Components [ai, i) and [bj, j); empty when exhausted (0). */
		while (ai < i && a[ai] == '0')
			ai++;
		while (bj < j && b[bj] == '0')
			bj++;
		size_t al = i - ai, bl = j - bj;
		if (al != bl)
			return al < bl ? -1 : 1;
		int c = memcmp(a + ai, b + bj, al);
		if (c != 0)
			return c;
		if (i < an)
			i++; /* the dot */
		if (j < bn)
			j++;
	}
	return 0;
}

enum sus_op { SUS_LT, SUS_LE, SUS_GT, SUS_GE, SUS_EQ };

/*
 * Walks range: for each comparator, checks it and, when version (n bytes, a dotted number) is
 * given, whether version satisfies it.  Returns false when range is not valid; otherwise true
 * with *all set to whether every comparator is satisfied (true when version is NULL).
 */
static bool sus_range_eval(const char *range, const char *version, size_t vn, bool *all)
{
	const char *p = range;
	*all = true;
	for (;;) {
		while (*p == ' ')
			p++;
		enum sus_op op = SUS_EQ;
		if (p[0] == '<' && p[1] == '=') {
			op = SUS_LE;
			p += 2;
		} else if (p[0] == '>' && p[1] == '=') {
			op = SUS_GE;
			p += 2;
		} else if (p[0] == '=' && p[1] == '=') {
			p += 2;
		} else if (p[0] == '<') {
			op = SUS_LT;
			p++;
		} else if (p[0] == '>') {
			op = SUS_GT;
			p++;
		} else if (p[0] == '=') {
			p++;
		}
		while (*p == ' ')
			p++;
		const char *num = p;
		while (sus_is_digit(*p) || *p == '.')
			p++;
		size_t nn = (size_t)(p - num);
		if (!sus_dotted_ok(num, nn))
			return false;
		if (version != NULL) {
			int c = sus_dotted_cmp(version, vn, num, nn);
			bool ok = (op == SUS_LT && c < 0) || (op == SUS_LE && c <= 0) ||
				  (op == SUS_GT && c > 0) || (op == SUS_GE && c >= 0) ||
				  (op == SUS_EQ && c == 0);
			if (!ok)
				*all = false;
		}
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return true;
		if (*p != ',')
			return false;
		p++;
	}
}

bool suslist_version_matches(const char *range, const char *version)
{
	bool all;
	if (range == NULL)
		return true;
	size_t vn = version != NULL ? strlen(version) : 0;
	if (version == NULL || !sus_dotted_ok(version, vn)) {
		/* Not a version we can order: it satisfies every valid range (fail closed). */
		return sus_range_eval(range, NULL, 0, &all);
	}
	return sus_range_eval(range, version, vn, &all) && all;
}

/* ---- the sequence, outside jansson -------------------------------------------------------- */

static size_t sus_skip_ws(const char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/* i at '"': the index after the closing quote, or n when unterminated. */
static size_t sus_skip_string(const char *p, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return n;
}

static int sus_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* i at '"': whether the JSON string there, unescaped, is "sequence". */
static bool sus_key_is_sequence(const char *p, size_t n, size_t i)
{
	static const char want[] = "sequence";
	size_t k = 0;
	for (i++; i < n && p[i] != '"'; i++) {
		char c = p[i];
		if (c == '\\') {
			if (i + 1 >= n)
				return false;
			c = p[++i];
			if (c == 'u') {
				int v = 0;
				for (int h = 0; h < 4; h++) {
					int d = i + 1 < n ? sus_hex_value(p[++i]) : -1;
					if (d < 0)
						return false;
					v = v * 16 + d;
				}
				if (v <= 0 || v >= 0x80)
					return false;
				c = (char)v;
			}
			/* Other escapes (\" \\ \/ \b …) are no letter of "sequence". */
		}
		if (k >= sizeof want - 1 || c != want[k])
			return false;
		k++;
	}
	return i < n && k == sizeof want - 1;
}

/* i at the start of a value: the index after it, or n when the text cannot be followed. */
static size_t sus_skip_value(const char *p, size_t n, size_t i)
{
	if (i >= n)
		return n;
	if (p[i] == '"')
		return sus_skip_string(p, n, i);
	if (p[i] == '{' || p[i] == '[') {
		size_t depth = 0;
		while (i < n) {
			if (p[i] == '"') {
				i = sus_skip_string(p, n, i);
				continue;
			}
			if (p[i] == '{' || p[i] == '[')
				depth++;
			else if ((p[i] == '}' || p[i] == ']') && --depth == 0)
				return i + 1;
			i++;
		}
		return n;
	}
	while (i < n && !strchr(",}] \t\r\n", p[i]))
		i++;
	return i;
}

/*
 * Finds the raw value of the top-level member "sequence" of the JSON object text p[0..n):
 * *start and *len (len 0 when not found or the text cannot be followed; jansson then judges).
 */
static void sus_find_sequence(const char *p, size_t n, size_t *start, size_t *len)
{
	*start = *len = 0;
	size_t i = sus_skip_ws(p, n, 0);
	if (i >= n || p[i] != '{')
		return;
	i = sus_skip_ws(p, n, i + 1);
	while (i < n && p[i] == '"') {
		bool is_seq = sus_key_is_sequence(p, n, i);
		i = sus_skip_ws(p, n, sus_skip_string(p, n, i));
		if (i >= n || p[i] != ':')
			return;
		i = sus_skip_ws(p, n, i + 1);
		size_t end = sus_skip_value(p, n, i);
		if (end >= n)
			return;
		if (is_seq) {
			*start = i;
			*len = end - i;
			return;
		}
		i = sus_skip_ws(p, n, end);
		if (i >= n || p[i] != ',')
			return;
		i = sus_skip_ws(p, n, i + 1);
	}
}

/*
 * The raw sequence token t[0..n): SUSLIST_OK with *out for a canonical unsigned 64-bit
 * integer, SUSLIST_MALFORMED (err filled) for a number that is not one, and 1 when the token
 * is no JSON number at all (a string, true, …: the typed check after jansson reports it).
 */
static int sus_parse_sequence_token(const char *t, size_t n, uint64_t *out,
				    struct suslist_error *err)
{
	if (n == 0 || (t[0] != '-' && !sus_is_digit(t[0])))
		return 1;
	if (t[0] == '-')
		return sus_fail(err, SUSLIST_MALFORMED, "sequence",
				"must be an unsigned 64-bit integer, not negative");
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!sus_is_digit(t[i]) || (i == 1 && t[0] == '0'))
			return sus_fail(err, SUSLIST_MALFORMED, "sequence",
					"must be an unsigned 64-bit integer, without fraction, "
					"exponent or leading zeros");
		unsigned d = (unsigned)(t[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return sus_fail(err, SUSLIST_MALFORMED, "sequence",
					"must be an unsigned 64-bit integer, at most "
					"18446744073709551615");
		v = v * 10 + d;
	}
	*out = v;
	return SUSLIST_OK;
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

static bool sus_in_list(const char *const *list, const char *s)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strcmp(list[i], s) == 0)
			return true;
	}
	return false;
}

/* A key that may be quoted back: a plain identifier, short.  Anything else stays unnamed. */
static bool sus_key_quotable(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || sus_is_digit(c) ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* "parent.key", or "key" at the top level. */
static void sus_path(char out[SUSLIST_PATH_MAX], const char *parent, const char *key)
{
	if (parent[0] != '\0')
		snprintf(out, SUSLIST_PATH_MAX, "%s.%s", parent, key);
	else
		snprintf(out, SUSLIST_PATH_MAX, "%s", key);
}

/* Refuses obj unless it is an object whose keys are all in allowed.  path names obj. */
static int sus_check_object(const json_t *obj, const char *path, const char *what,
			    const char *const *allowed, struct suslist_error *err)
{
	const char *key;
	const json_t *value;
	if (!json_is_object(obj))
		return sus_failf(err, SUSLIST_MALFORMED, path, "must be a JSON object (%s)", what);
	json_object_foreach((json_t *)obj, key, value)
	{
		(void)value;
		if (sus_in_list(allowed, key))
			continue;
		if (sus_key_quotable(key)) {
			char p[SUSLIST_PATH_MAX];
			sus_path(p, path, key);
			return sus_fail(err, SUSLIST_MALFORMED, p, "unknown field");
		}
		return sus_fail(err, SUSLIST_MALFORMED, path,
				"unknown field (its name is not shown: not a plain identifier)");
	}
	return SUSLIST_OK;
}

/*
 * The string member key of obj: *out and *n, or NULL *out when absent and !required.  Wrong
 * type or a missing required member is MALFORMED.
 */
static int sus_get_string(const json_t *obj, const char *parent, const char *key, bool required,
			  const char **out, size_t *n, struct suslist_error *err)
{
	char p[SUSLIST_PATH_MAX];
	const json_t *v = json_object_get(obj, key);
	*out = NULL;
	*n = 0;
	sus_path(p, parent, key);
	if (v == NULL) {
		if (required)
			return sus_fail(err, SUSLIST_MALFORMED, p, "required field is missing");
		return SUSLIST_OK;
	}
	const char *text = json_is_string(v) ? json_string_value(v) : NULL;
	if (text == NULL)
		return sus_fail(err, SUSLIST_MALFORMED, p, "must be a string");
	*out = text;
	*n = json_string_length(v);
	return SUSLIST_OK;
}

/* ---- envelope and signatures -------------------------------------------------------------- */

static bool sus_key_id_ok(const char *s, size_t n)
{
	if (n != SUSLIST_KEY_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!sus_is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	}
	return true;
}

/* Index of the configured key with key_id, or -1. */
static long sus_key_index(const struct suslist_keyring *keys, const char *key_id)
{
	for (size_t i = 0; i < keys->n; i++) {
		if (strcmp(keys->keys[i].key_id, key_id) == 0)
			return (long)i;
	}
	return -1;
}

static bool sus_ed25519_ok(EVP_PKEY *key, const unsigned char *sig, const unsigned char *msg,
			   size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
		  EVP_DigestVerify(ctx, sig, SUSLIST_SIG_LEN, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/*
 * Checks the envelope's shape, decodes the payload (*payload, *payload_len, owned by the
 * caller) and counts the distinct configured keys with a valid signature over it.
 */
static int sus_verify_envelope(const struct suslist_keyring *keys, unsigned threshold,
			       const json_t *env, unsigned char **payload, size_t *payload_len,
			       struct suslist_error *err)
{
	const char *s;
	size_t n;
	int rc;
	*payload = NULL;
	*payload_len = 0;
	rc = sus_check_object(env, "", "the signed list envelope {\"payload\", \"signatures\"}",
			      sus_envelope_keys, err);
	if (rc != SUSLIST_OK)
		return rc;
	rc = sus_get_string(env, "", "payload", true, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	if (n == 0)
		return sus_fail(err, SUSLIST_MALFORMED, "payload", "must not be empty");
	const json_t *sigs = json_object_get(env, "signatures");
	if (sigs == NULL)
		return sus_fail(err, SUSLIST_MALFORMED, "signatures", "required field is missing");
	if (!json_is_array(sigs))
		return sus_fail(err, SUSLIST_MALFORMED, "signatures", "must be an array");
	if (json_array_size(sigs) > SUSLIST_SIGNATURES_MAX)
		return sus_failf(err, SUSLIST_MALFORMED, "signatures", "must hold at most %d items",
				 SUSLIST_SIGNATURES_MAX);

	/* The shape of every signature first, so a malformed envelope never depends on keys. */
	unsigned char sig[SUSLIST_SIGNATURES_MAX][SUSLIST_SIG_LEN];
	const char *key_id[SUSLIST_SIGNATURES_MAX];
	size_t count = json_array_size(sigs);
	for (size_t i = 0; i < count; i++) {
		char p[SUSLIST_PARENT_MAX];
		const json_t *item = json_array_get(sigs, i);
		snprintf(p, sizeof p, "signatures[%zu]", i);
		rc = sus_check_object(item, p, "{\"key_id\", \"alg\", \"sig\"}", sus_signature_keys,
				      err);
		if (rc == SUSLIST_OK)
			rc = sus_get_string(item, p, "key_id", true, &key_id[i], &n, err);
		if (rc != SUSLIST_OK)
			return rc;
		char q[SUSLIST_PATH_MAX];
		if (!sus_key_id_ok(key_id[i], n)) {
			sus_path(q, p, "key_id");
			return sus_fail(err, SUSLIST_MALFORMED, q,
					"must be 16 lower-case hex characters");
		}
		rc = sus_get_string(item, p, "alg", true, &s, &n, err);
		if (rc != SUSLIST_OK)
			return rc;
		if (strcmp(s, "ed25519") != 0) {
			sus_path(q, p, "alg");
			return sus_fail(err, SUSLIST_MALFORMED, q, "must be \"ed25519\"");
		}
		rc = sus_get_string(item, p, "sig", true, &s, &n, err);
		if (rc != SUSLIST_OK)
			return rc;
		unsigned char *raw;
		size_t raw_len;
		int b = sus_b64_decode(s, n, &raw, &raw_len);
		if (b == -2)
			return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
		if (b != 0 || raw_len != SUSLIST_SIG_LEN) {
			free(raw);
			sus_path(q, p, "sig");
			return sus_fail(err, SUSLIST_MALFORMED, q,
					"must be padded standard base64 of a 64-byte Ed25519 "
					"signature");
		}
		memcpy(sig[i], raw, SUSLIST_SIG_LEN);
		free(raw);
	}
	s = json_string_value(json_object_get(env, "payload"));
	int b = sus_b64_decode(s, strlen(s), payload, payload_len);
	if (b == -2)
		return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	if (b != 0)
		return sus_fail(err, SUSLIST_MALFORMED, "payload",
				"must be padded standard base64 (RFC 4648, no line breaks)");
	if (keys == NULL)
		return SUSLIST_OK; /* suslist_parse_stored(): verified when it was received */

	/* Distinct configured keys with a valid signature; others are not counted. */
	bool *counted = calloc(keys->n, sizeof *counted);
	if (counted == NULL) {
		free(*payload);
		*payload = NULL;
		return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	}
	unsigned valid = 0;
	for (size_t i = 0; i < count; i++) {
		long k = sus_key_index(keys, key_id[i]);
		if (k < 0 || counted[k])
			continue;
		if (sus_ed25519_ok(keys->keys[k].key, sig[i], *payload, *payload_len)) {
			counted[k] = true;
			valid++;
		}
	}
	free(counted);
	if (valid < threshold) {
		free(*payload);
		*payload = NULL;
		return sus_failf(err, SUSLIST_SIGNATURE_INVALID, "signatures",
				 "%u valid signature%s by configured ministry keys, %u required: "
				 "the list is not from the ministry, was altered, or was signed "
				 "with keys this appliance does not trust",
				 valid, valid == 1 ? "" : "s", threshold);
	}
	return SUSLIST_OK;
}

/* ---- the list ----------------------------------------------------------------------------- */

static bool sus_plugin_char(char c)
{
	return (c >= 'a' && c <= 'z') || sus_is_digit(c) || c == '-';
}

static int sus_parse_certificates(const json_t *entry, const char *parent, struct suslist_entry *e,
				  struct suslist_error *err)
{
	char p[SUSLIST_PATH_MAX], q[SUSLIST_PATH_MAX + 24];
	const json_t *arr = json_object_get(entry, "certificates");
	sus_path(p, parent, "certificates");
	if (arr == NULL) {
		e->certs[0] = sus_star;
		e->n_certs = 1;
		return SUSLIST_OK;
	}
	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return sus_fail(err, SUSLIST_MALFORMED, p,
				"must be a non-empty array: [\"*\"] or certificate types");
	size_t n = json_array_size(arr);
	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_array_get(arr, i);
		snprintf(q, sizeof q, "%s[%zu]", p, i);
		if (!json_is_string(v))
			return sus_fail(err, SUSLIST_MALFORMED, q, "must be a string");
		const char *s = json_string_value(v);
		if (strcmp(s, "*") == 0) {
			if (n != 1)
				return sus_fail(err, SUSLIST_MALFORMED, q,
						"\"*\" (every type) must stand alone");
			e->certs[0] = sus_star;
			e->n_certs = 1;
			return SUSLIST_OK;
		}
		const char *name = NULL;
		for (size_t t = 0; t < SUSLIST_CERT_TYPES; t++) {
			if (strcmp(s, sus_cert_types[t]) == 0)
				name = sus_cert_types[t];
		}
		if (name == NULL)
			return sus_fail(err, SUSLIST_MALFORMED, q,
					"must be \"*\" or a certificate type: residence, "
					"residence-record, seal, tax-income, koseki-full, "
					"koseki-individual, koseki-attachment");
		for (size_t j = 0; j < e->n_certs; j++) {
			if (e->certs[j] == name)
				return sus_fail(err, SUSLIST_MALFORMED, q,
						"names a certificate type twice");
		}
		e->certs[e->n_certs++] = name;
	}
	return SUSLIST_OK;
}

static int sus_parse_municipalities(const json_t *entry, const char *parent,
				    struct suslist_entry *e, struct suslist_error *err)
{
	char p[SUSLIST_PATH_MAX], q[SUSLIST_PATH_MAX + 24];
	const json_t *arr = json_object_get(entry, "municipalities");
	sus_path(p, parent, "municipalities");
	size_t n = arr != NULL && json_is_array(arr) ? json_array_size(arr) : 1;
	if (arr != NULL && (!json_is_array(arr) || n == 0))
		return sus_fail(err, SUSLIST_MALFORMED, p,
				"must be a non-empty array: [\"*\"] or 6-digit codes");
	e->munis = calloc(n, sizeof *e->munis);
	if (e->munis == NULL)
		return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	if (arr == NULL) {
		strcpy(e->munis[0], "*");
		e->n_munis = 1;
		return SUSLIST_OK;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_array_get(arr, i);
		snprintf(q, sizeof q, "%s[%zu]", p, i);
		if (!json_is_string(v))
			return sus_fail(err, SUSLIST_MALFORMED, q, "must be a string");
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		if (strcmp(s, "*") == 0) {
			if (n != 1)
				return sus_fail(err, SUSLIST_MALFORMED, q,
						"\"*\" (every municipality) must stand alone");
		} else {
			bool ok = len == SUSLIST_MUNICIPALITY_LEN;
			for (size_t k = 0; ok && k < len; k++)
				ok = sus_is_digit(s[k]);
			if (!ok)
				return sus_fail(err, SUSLIST_MALFORMED, q,
						"must be \"*\" or a 6-digit municipality code");
			for (size_t j = 0; j < e->n_munis; j++) {
				if (strcmp(e->munis[j], s) == 0)
					return sus_fail(err, SUSLIST_MALFORMED, q,
							"names a municipality twice");
			}
		}
		memcpy(e->munis[e->n_munis], s, len + 1);
		e->n_munis++;
	}
	return SUSLIST_OK;
}

/* Parses suspension i (path parent) into e; e->munis is owned by e even on failure. */
static int sus_parse_entry(const json_t *entry, const char *parent, struct suslist_entry *e,
			   struct suslist_error *err)
{
	char p[SUSLIST_PATH_MAX];
	const char *s;
	size_t n;
	int rc = sus_check_object(entry, parent, "a suspension", sus_entry_keys, err);
	if (rc != SUSLIST_OK)
		return rc;

	rc = sus_get_string(entry, parent, "id", true, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	bool ok = n >= 1 && n <= SUSLIST_ID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = s[i] >= 0x20 && s[i] <= 0x7e;
	if (!ok) {
		sus_path(p, parent, "id");
		return sus_failf(err, SUSLIST_MALFORMED, p,
				 "must be 1 to %d printable ASCII characters", SUSLIST_ID_MAX);
	}
	memcpy(e->id, s, n + 1);

	rc = sus_get_string(entry, parent, "plugin", true, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	ok = n >= 1 && n <= SUSLIST_PLUGIN_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = sus_plugin_char(s[i]);
	if (!ok) {
		sus_path(p, parent, "plugin");
		return sus_failf(err, SUSLIST_MALFORMED, p,
				 "must be a plugin name: 1 to %d characters of a-z 0-9 -",
				 SUSLIST_PLUGIN_MAX);
	}
	memcpy(e->plugin, s, n + 1);

	rc = sus_get_string(entry, parent, "versions", false, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	if (s != NULL) {
		bool all;
		if (n == 0 || n > SUSLIST_VERSIONS_MAX || strlen(s) != n ||
		    !sus_range_eval(s, NULL, 0, &all)) {
			sus_path(p, parent, "versions");
			return sus_failf(err, SUSLIST_MALFORMED, p,
					 "must be comparators joined by commas, e.g. "
					 "\">=1.0.0,<2.3.1\" (operators < <= > >= = ==, dotted "
					 "numbers; at most %d characters)",
					 SUSLIST_VERSIONS_MAX);
		}
		memcpy(e->versions, s, n + 1);
		e->has_versions = true;
	}

	rc = sus_parse_certificates(entry, parent, e, err);
	if (rc == SUSLIST_OK)
		rc = sus_parse_municipalities(entry, parent, e, err);
	if (rc != SUSLIST_OK)
		return rc;

	rc = sus_get_string(entry, parent, "mode", false, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	e->mode = SUSLIST_IMMEDIATE;
	if (s != NULL && strcmp(s, "drain") == 0) {
		e->mode = SUSLIST_DRAIN;
	} else if (s != NULL && strcmp(s, "immediate") != 0) {
		sus_path(p, parent, "mode");
		return sus_fail(err, SUSLIST_MALFORMED, p, "must be \"immediate\" or \"drain\"");
	}

	rc = sus_get_string(entry, parent, "reason", false, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	if (s != NULL) {
		ok = n <= SUSLIST_REASON_MAX;
		for (size_t i = 0; ok && i < n; i++)
			ok = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f;
		if (!ok) {
			sus_path(p, parent, "reason");
			return sus_failf(err, SUSLIST_MALFORMED, p,
					 "must be at most %d bytes of UTF-8 without control "
					 "characters",
					 SUSLIST_REASON_MAX);
		}
		memcpy(e->reason, s, n + 1);
	}
	return SUSLIST_OK;
}

static int sus_parse_time_field(const json_t *obj, const char *key, time_t *out,
				struct suslist_error *err)
{
	const char *s;
	size_t n;
	int rc = sus_get_string(obj, "", key, true, &s, &n, err);
	if (rc != SUSLIST_OK)
		return rc;
	if (sus_parse_time(s, n, out) != 0)
		return sus_fail(err, SUSLIST_MALFORMED, key,
				"must be an RFC 3339 UTC time YYYY-MM-DDTHH:MM:SS[.fraction]Z");
	return SUSLIST_OK;
}

/* Parses the verified payload into list (whose entries it allocates). */
static int sus_parse_payload(const unsigned char *payload, size_t len, struct suslist *list,
			     struct suslist_error *err)
{
	const char *text = (const char *)payload;
	size_t seq_at, seq_len;
	uint64_t seq = 0;
	int seq_rc = 1;
	json_error_t jerr;

	/* The sequence is read here and replaced by "0" in a copy, for jansson's sake. */
	sus_find_sequence(text, len, &seq_at, &seq_len);
	if (seq_len > 0) {
		seq_rc = sus_parse_sequence_token(text + seq_at, seq_len, &seq, err);
		if (seq_rc < 0)
			return seq_rc;
	}
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (seq_rc == SUSLIST_OK) {
		copy[seq_at] = '0';
		memset(copy + seq_at + 1, ' ', seq_len - 1);
	}
	json_t *root = json_loadb(copy, len, JSON_REJECT_DUPLICATES, &jerr);
	free(copy);
	if (root == NULL)
		return sus_failf(err, SUSLIST_MALFORMED, "",
				 "the payload is not valid JSON (line %d, column %d) or repeats a "
				 "key",
				 jerr.line, jerr.column);

	int rc = sus_check_object(root, "", "the suspension list", sus_list_keys, err);
	const char *s;
	size_t n;
	if (rc == SUSLIST_OK)
		rc = sus_get_string(root, "", "type", true, &s, &n, err);
	if (rc == SUSLIST_OK && strcmp(s, SUSLIST_TYPE) != 0)
		rc = sus_fail(err, SUSLIST_MALFORMED, "type", "must be \"" SUSLIST_TYPE "\"");
	if (rc == SUSLIST_OK) {
		const json_t *v = json_object_get(root, "sequence");
		if (v == NULL)
			rc = sus_fail(err, SUSLIST_MALFORMED, "sequence",
				      "required field is missing");
		else if (seq_rc != SUSLIST_OK && (!json_is_integer(v) || json_integer_value(v) < 0))
			rc = sus_fail(err, SUSLIST_MALFORMED, "sequence",
				      "must be an unsigned 64-bit integer");
		else if (seq_rc != SUSLIST_OK)
			seq = (uint64_t)json_integer_value(v); /* not found by the scanner */
		list->sequence = seq;
	}
	if (rc == SUSLIST_OK)
		rc = sus_parse_time_field(root, "issued_at", &list->issued_at, err);
	if (rc == SUSLIST_OK)
		rc = sus_parse_time_field(root, "expires_at", &list->expires_at, err);
	if (rc == SUSLIST_OK && list->expires_at <= list->issued_at)
		rc = sus_fail(err, SUSLIST_MALFORMED, "expires_at", "must be later than issued_at");
	const json_t *arr = json_object_get(root, "suspensions");
	if (rc == SUSLIST_OK && arr == NULL)
		rc = sus_fail(err, SUSLIST_MALFORMED, "suspensions", "required field is missing");
	else if (rc == SUSLIST_OK && !json_is_array(arr))
		rc = sus_fail(err, SUSLIST_MALFORMED, "suspensions", "must be an array");
	else if (rc == SUSLIST_OK && json_array_size(arr) > SUSLIST_ENTRIES_MAX)
		rc = sus_failf(err, SUSLIST_MALFORMED, "suspensions", "must hold at most %d items",
			       SUSLIST_ENTRIES_MAX);
	if (rc == SUSLIST_OK && json_array_size(arr) > 0) {
		list->entries = calloc(json_array_size(arr), sizeof *list->entries);
		if (list->entries == NULL)
			rc = sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	}
	for (size_t i = 0; rc == SUSLIST_OK && i < json_array_size(arr); i++) {
		char p[SUSLIST_PARENT_MAX];
		snprintf(p, sizeof p, "suspensions[%zu]", i);
		struct suslist_entry *e = &list->entries[i];
		list->n++; /* e->munis is freed with the list from here */
		rc = sus_parse_entry(json_array_get(arr, i), p, e, err);
		for (size_t j = 0; rc == SUSLIST_OK && j < i; j++) {
			if (strcmp(list->entries[j].id, e->id) == 0)
				rc = sus_failf(err, SUSLIST_MALFORMED, p,
					       "id repeats the id of suspensions[%zu]", j);
		}
	}
	json_decref(root);
	return rc;
}

/* Both parsers; keys NULL: the signatures' shape is checked, not who made them. */
static int sus_parse(const struct suslist_keyring *keys, unsigned threshold,
		     const char *signed_json, size_t len, time_t now, struct suslist **out,
		     struct suslist_error *err)
{
	json_error_t jerr;
	if (signed_json == NULL || len == 0)
		return sus_fail(err, SUSLIST_MALFORMED, "", "the signed list is empty");
	if (len > SUSLIST_BYTES_MAX)
		return sus_failf(err, SUSLIST_MALFORMED, "",
				 "the signed list is larger than %d bytes", SUSLIST_BYTES_MAX);
	json_t *env = json_loadb(signed_json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (env == NULL)
		return sus_failf(
		    err, SUSLIST_MALFORMED, "",
		    "the signed list is not valid JSON (line %d, column %d) or repeats "
		    "a key",
		    jerr.line, jerr.column);
	unsigned char *payload;
	size_t payload_len;
	int rc = sus_verify_envelope(keys, threshold, env, &payload, &payload_len, err);
	json_decref(env);
	if (rc != SUSLIST_OK)
		return rc;

	struct suslist *list = calloc(1, sizeof *list);
	char *raw = malloc(len + 1);
	if (list == NULL || raw == NULL) {
		free(list);
		free(raw);
		free(payload);
		return sus_fail(err, SUSLIST_ERROR, "", "out of memory");
	}
	memcpy(raw, signed_json, len);
	raw[len] = '\0';
	list->raw = raw;
	list->raw_len = len;
	list->verified_at = now;
	rc = sus_parse_payload(payload, payload_len, list, err);
	free(payload);
	if (rc != SUSLIST_OK) {
		suslist_free(list);
		return rc;
	}
	*out = list;
	return SUSLIST_OK;
}

int suslist_parse_verify(const struct suslist_keyring *keys, unsigned threshold,
			 const char *signed_json, size_t len, time_t now, struct suslist **out,
			 struct suslist_error *err)
{
	*out = NULL;
	if (err != NULL)
		memset(err, 0, sizeof *err);
	if (keys == NULL || threshold == 0)
		return sus_fail(err, SUSLIST_ERROR, "",
				"no ministry key or a signature threshold of 0 is configured: a "
				"list must be signed by at least one configured key");
	return sus_parse(keys, threshold, signed_json, len, now, out, err);
}

int suslist_parse_stored(const char *signed_json, size_t len, time_t verified_at,
			 struct suslist **out, struct suslist_error *err)
{
	*out = NULL;
	if (err != NULL)
		memset(err, 0, sizeof *err);
	return sus_parse(NULL, 0, signed_json, len, verified_at, out, err);
}

void suslist_free(struct suslist *list)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < list->n; i++)
		free(list->entries[i].munis);
	free(list->entries);
	free(list->raw);
	free(list);
}

const char *suslist_status_code(int status)
{
	switch (status) {
	case SUSLIST_OK:
		return "OK";
	case SUSLIST_MALFORMED:
		return "LIST_MALFORMED";
	case SUSLIST_SIGNATURE_INVALID:
		return "LIST_SIGNATURE_INVALID";
	default:
		return "INTERNAL_ERROR";
	}
}

int suslist_status_http(int status)
{
	switch (status) {
	case SUSLIST_OK:
		return 200;
	case SUSLIST_MALFORMED:
		return 400;
	case SUSLIST_SIGNATURE_INVALID:
		return 401;
	default:
		return 500;
	}
}

/* ---- accessors and matching --------------------------------------------------------------- */

uint64_t suslist_sequence(const struct suslist *list)
{
	return list->sequence;
}

time_t suslist_issued_at(const struct suslist *list)
{
	return list->issued_at;
}

time_t suslist_expires_at(const struct suslist *list)
{
	return list->expires_at;
}

time_t suslist_verified_at(const struct suslist *list)
{
	return list->verified_at;
}

bool suslist_expired(const struct suslist *list, time_t now)
{
	return now >= list->expires_at;
}

const char *suslist_raw(const struct suslist *list, size_t *len)
{
	if (len != NULL)
		*len = list->raw_len;
	return list->raw;
}

size_t suslist_count(const struct suslist *list)
{
	return list->n;
}

const struct suslist_entry *suslist_entry_at(const struct suslist *list, size_t i)
{
	return i < list->n ? &list->entries[i] : NULL;
}

const char *suslist_entry_id(const struct suslist_entry *entry)
{
	return entry->id;
}

const char *suslist_entry_plugin(const struct suslist_entry *entry)
{
	return entry->plugin;
}

const char *suslist_entry_versions(const struct suslist_entry *entry)
{
	return entry->has_versions ? entry->versions : NULL;
}

enum suslist_mode suslist_entry_mode(const struct suslist_entry *entry)
{
	return entry->mode;
}

const char *suslist_entry_reason(const struct suslist_entry *entry)
{
	return entry->reason;
}

size_t suslist_entry_certificate_count(const struct suslist_entry *entry)
{
	return entry->n_certs;
}

const char *suslist_entry_certificate(const struct suslist_entry *entry, size_t i)
{
	return i < entry->n_certs ? entry->certs[i] : NULL;
}

size_t suslist_entry_municipality_count(const struct suslist_entry *entry)
{
	return entry->n_munis;
}

const char *suslist_entry_municipality(const struct suslist_entry *entry, size_t i)
{
	return i < entry->n_munis ? entry->munis[i] : NULL;
}

static bool sus_entry_covers(const struct suslist_entry *e, const char *certificate,
			     const char *municipality)
{
	bool cert = certificate == NULL || e->certs[0] == sus_star;
	for (size_t i = 0; !cert && i < e->n_certs; i++)
		cert = strcmp(e->certs[i], certificate) == 0;
	bool muni = municipality == NULL || strcmp(e->munis[0], "*") == 0;
	for (size_t i = 0; !muni && i < e->n_munis; i++)
		muni = strcmp(e->munis[i], municipality) == 0;
	return cert && muni;
}

bool suslist_match(const struct suslist *list, const char *plugin, const char *version,
		   const char *certificate, const char *municipality, bool in_flight,
		   const struct suslist_entry **out)
{
	const struct suslist_entry *first = NULL;
	if (out != NULL)
		*out = NULL;
	for (size_t i = 0; i < list->n; i++) {
		const struct suslist_entry *e = &list->entries[i];
		if (strcmp(e->plugin, plugin) != 0)
			continue;
		if (in_flight && e->mode != SUSLIST_IMMEDIATE)
			continue;
		if (e->has_versions && !suslist_version_matches(e->versions, version))
			continue;
		if (!sus_entry_covers(e, certificate, municipality))
			continue;
		if (e->mode == SUSLIST_IMMEDIATE) {
			first = e;
			break;
		}
		if (first == NULL)
			first = e;
	}
	if (out != NULL)
		*out = first;
	return first != NULL;
}
