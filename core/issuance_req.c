/*
 * issuance_req.c: strict parse of the issuance request body (contract in issuance_req.h).
 *
 * One pass over a jansson tree: the body is loaded with JSON_REJECT_DUPLICATES, each object's
 * keys are first checked against the names it may have (so an unknown field is named before
 * any value of the object is looked at), then each field is checked in the order of the
 * header's table, so the first error is always the same for the same body.  Error texts are
 * built only from field names this file knows and from positions: jansson's own messages quote
 * the input ("near '…'") and are never passed on.  No state outside the call; any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "issuance_req.h"
#include "record.h"

#define ISSUANCE_PATH_MAX 64

static const char *const req_top_keys[] = {"request_id",  "requested_at", "municipality",
					   "certificate", "copies",	  "options",
					   "terminal",	  "subject",	  NULL};
static const char *const req_option_keys[] = {"household", "show_my_number", "show_domicile", NULL};
static const char *const req_terminal_keys[] = {"operator", "store", "kiosk", NULL};
static const char *const req_subject_keys[] = {"card_serial", NULL};

/* Fills err (when given) and returns status.  field is a path this file built, never input. */
__attribute__((format(printf, 4, 5))) static int
req_fail(struct issuance_req_error *err, int status, const char *field, const char *fmt, ...)
{
	if (err != NULL) {
		snprintf(err->field, sizeof err->field, "%s", field ? field : "");
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return status;
}

/* "parent.key", or "key" at the top level. */
static void req_path(char *out, const char *parent, const char *key)
{
	if (parent[0] != '\0')
		snprintf(out, ISSUANCE_PATH_MAX, "%s.%s", parent, key);
	else
		snprintf(out, ISSUANCE_PATH_MAX, "%s", key);
}

static int req_in_list(const char *const *list, const char *s)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strcmp(list[i], s) == 0)
			return 1;
	}
	return 0;
}

/* A key that may be quoted back: a plain identifier, short.  Anything else stays unnamed. */
static int req_key_quotable(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* Refuses the first key of obj that is not in allowed.  path names obj ("" = the body). */
static int req_check_keys(const json_t *obj, const char *path, const char *const *allowed,
			  struct issuance_req_error *err)
{
	const char *key;
	const json_t *value;
	json_object_foreach((json_t *)obj, key, value)
	{
		(void)value;
		if (req_in_list(allowed, key))
			continue;
		if (req_key_quotable(key)) {
			char p[ISSUANCE_PATH_MAX];
			req_path(p, path, key);
			return req_fail(err, ISSUANCE_REQ_INVALID, p, "unknown field");
		}
		return req_fail(err, ISSUANCE_REQ_INVALID, path,
				"unknown field (its name is not shown: not a plain identifier)");
	}
	return ISSUANCE_REQ_OK;
}

/*
 * The member key of obj as a string of 1..max bytes each accepted by char_ok; copies it with
 * its NUL into out (max + 1 bytes).  Absent: ISSUANCE_REQ_OK with out[0] == '\0' when
 * !required.  what describes the accepted characters for the message.
 */
static int req_string(const json_t *obj, const char *parent, const char *key, int required,
		      size_t max, int (*char_ok)(unsigned char), const char *what, char *out,
		      struct issuance_req_error *err)
{
	char p[ISSUANCE_PATH_MAX];
	req_path(p, parent, key);
	out[0] = '\0';
	const json_t *v = json_object_get(obj, key);
	if (v == NULL) {
		if (required)
			return req_fail(err, ISSUANCE_REQ_INVALID, p, "required field is missing");
		return ISSUANCE_REQ_OK;
	}
	if (!json_is_string(v))
		return req_fail(err, ISSUANCE_REQ_INVALID, p, "must be a string");
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0 || n > max)
		return req_fail(err, ISSUANCE_REQ_INVALID, p, "must be 1 to %zu characters of %s",
				max, what);
	for (size_t i = 0; i < n; i++) {
		if (!char_ok((unsigned char)s[i]))
			return req_fail(err, ISSUANCE_REQ_INVALID, p,
					"must be 1 to %zu characters of %s", max, what);
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return ISSUANCE_REQ_OK;
}

static int req_id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static int req_digit_char(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int req_printable_char(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e;
}

static int req_upper_hex_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* The member key of obj as a boolean; absent means false. */
static int req_bool(const json_t *obj, const char *parent, const char *key, bool *out,
		    struct issuance_req_error *err)
{
	const json_t *v = json_object_get(obj, key);
	*out = false;
	if (v == NULL)
		return ISSUANCE_REQ_OK;
	if (!json_is_boolean(v)) {
		char p[ISSUANCE_PATH_MAX];
		req_path(p, parent, key);
		return req_fail(err, ISSUANCE_REQ_INVALID, p, "must be true or false");
	}
	*out = json_is_true(v);
	return ISSUANCE_REQ_OK;
}

/* The member key of obj as an object; *out NULL when absent and !required. */
static int req_object(const json_t *obj, const char *key, int required, const json_t **out,
		      struct issuance_req_error *err)
{
	*out = json_object_get(obj, key);
	if (*out == NULL)
		return required
			   ? req_fail(err, ISSUANCE_REQ_INVALID, key, "required field is missing")
			   : ISSUANCE_REQ_OK;
	if (!json_is_object(*out))
		return req_fail(err, ISSUANCE_REQ_INVALID, key, "must be an object");
	return ISSUANCE_REQ_OK;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long req_days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

static unsigned req_days_in_month(unsigned y, unsigned m)
{
	static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return days[m - 1];
}

/* n decimal digits at s as a number; -1 if any is not a digit. */
static int req_digits(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int issuance_req_parse_time(const char *s, size_t len, time_t *out)
{
	/* YYYY-MM-DDTHH:MM:SS then Z, or .F{1,9}Z */
	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	int y = req_digits(s, 4), mo = req_digits(s + 5, 2), d = req_digits(s + 8, 2);
	int h = req_digits(s + 11, 2), mi = req_digits(s + 14, 2), sec = req_digits(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    sec < 0 || sec > 59)
		return -1;
	if ((unsigned)d > req_days_in_month((unsigned)y, (unsigned)mo))
		return -1;
	if (len == 20) {
		if (s[19] != 'Z')
			return -1;
	} else {
		size_t frac = len - 21; /* digits between '.' and 'Z' */
		if (s[19] != '.' || s[len - 1] != 'Z' || frac < 1 || frac > 9 ||
		    req_digits(s + 20, frac) < 0)
			return -1;
	}
	long long days = req_days_from_civil(y, (unsigned)mo, (unsigned)d);
	*out = (time_t)(days * 86400 + h * 3600 + mi * 60 + sec);
	return 0;
}

/* Canonical card serial: upper-case hex, no leading zeros ("0" for zero). */
static int req_card_serial_canonical(const char *s)
{
	return s[0] != '0' || s[1] == '\0';
}

/* Everything after the JSON load: the tree is known to be an object. */
static int req_fields(const json_t *root, unsigned flags, struct issuance_req *out,
		      struct issuance_req_error *err)
{
	int rc = req_check_keys(root, "", req_top_keys, err);
	if (rc != ISSUANCE_REQ_OK)
		return rc;
	if (json_object_get(root, "subject") != NULL && !(flags & ISSUANCE_REQ_ALLOW_SUBJECT))
		return req_fail(err, ISSUANCE_REQ_INVALID, "subject",
				"unknown field (subject is accepted only when card_proof.mode is "
				"center-asserted)");

	rc = req_string(root, "", "request_id", 1, ISSUANCE_REQUEST_ID_MAX, req_id_char,
			"[A-Za-z0-9._-]", out->request_id, err);
	if (rc != ISSUANCE_REQ_OK)
		return rc;

	const json_t *v = json_object_get(root, "requested_at");
	if (v == NULL)
		return req_fail(err, ISSUANCE_REQ_INVALID, "requested_at",
				"required field is missing");
	if (!json_is_string(v) ||
	    issuance_req_parse_time(json_string_value(v), json_string_length(v),
				    &out->requested_at) != 0)
		return req_fail(err, ISSUANCE_REQ_INVALID, "requested_at",
				"must be an RFC 3339 UTC time YYYY-MM-DDTHH:MM:SS[.fraction]Z");

	rc = req_string(root, "", "municipality", 1, ISSUANCE_MUNICIPALITY_LEN, req_digit_char,
			"digits", out->municipality, err);
	if (rc != ISSUANCE_REQ_OK)
		return rc;
	if (strlen(out->municipality) != ISSUANCE_MUNICIPALITY_LEN)
		return req_fail(err, ISSUANCE_REQ_INVALID, "municipality",
				"must be the 6-digit local government code");

	v = json_object_get(root, "certificate");
	if (v == NULL)
		return req_fail(err, ISSUANCE_REQ_INVALID, "certificate",
				"required field is missing");
	if (!json_is_string(v))
		return req_fail(err, ISSUANCE_REQ_INVALID, "certificate", "must be a string");
	out->certificate = record_certificate_index(json_string_value(v));
	if (out->certificate < 0 || strlen(json_string_value(v)) != json_string_length(v))
		return req_fail(err, ISSUANCE_REQ_UNSUPPORTED, "certificate",
				"unknown certificate type (residence, residence-record, seal, "
				"tax-income, koseki-full, koseki-individual, koseki-attachment)");
	out->certificate_name = record_certificate_types[out->certificate];

	out->copies = 1;
	v = json_object_get(root, "copies");
	if (v != NULL) {
		if (!json_is_integer(v))
			return req_fail(err, ISSUANCE_REQ_INVALID, "copies", "must be an integer");
		json_int_t c = json_integer_value(v);
		if (c < 1 || c > ISSUANCE_COPIES_MAX)
			return req_fail(err, ISSUANCE_REQ_INVALID, "copies", "must be 1 to %d",
					ISSUANCE_COPIES_MAX);
		out->copies = (unsigned)c;
	}

	const json_t *obj;
	rc = req_object(root, "options", 0, &obj, err);
	if (rc != ISSUANCE_REQ_OK)
		return rc;
	if (obj != NULL) {
		if ((rc = req_check_keys(obj, "options", req_option_keys, err)) != 0 ||
		    (rc = req_bool(obj, "options", "household", &out->household, err)) != 0 ||
		    (rc = req_bool(obj, "options", "show_my_number", &out->show_my_number, err)) !=
			0 ||
		    (rc = req_bool(obj, "options", "show_domicile", &out->show_domicile, err)) != 0)
			return rc;
	}

	rc = req_object(root, "terminal", 1, &obj, err);
	if (rc != ISSUANCE_REQ_OK)
		return rc;
	if ((rc = req_check_keys(obj, "terminal", req_terminal_keys, err)) != 0 ||
	    (rc = req_string(obj, "terminal", "operator", 1, ISSUANCE_TERMINAL_MAX,
			     req_printable_char, "printable ASCII", out->terminal_operator, err)) !=
		0 ||
	    (rc = req_string(obj, "terminal", "store", 1, ISSUANCE_TERMINAL_MAX, req_printable_char,
			     "printable ASCII", out->terminal_store, err)) != 0 ||
	    (rc = req_string(obj, "terminal", "kiosk", 1, ISSUANCE_TERMINAL_MAX, req_printable_char,
			     "printable ASCII", out->terminal_kiosk, err)) != 0)
		return rc;

	rc = req_object(root, "subject", 0, &obj, err);
	if (rc != ISSUANCE_REQ_OK || obj == NULL)
		return rc;
	if ((rc = req_check_keys(obj, "subject", req_subject_keys, err)) != 0 ||
	    (rc = req_string(obj, "subject", "card_serial", 1, ISSUANCE_CARD_SERIAL_MAX,
			     req_upper_hex_char, "upper-case hex", out->subject_card_serial,
			     err)) != 0)
		return rc;
	if (!req_card_serial_canonical(out->subject_card_serial))
		return req_fail(err, ISSUANCE_REQ_INVALID, "subject.card_serial",
				"must be upper-case hex without leading zeros");
	out->has_subject = true;
	return ISSUANCE_REQ_OK;
}

int issuance_req_parse(const char *body, size_t len, unsigned flags, struct issuance_req *out,
		       struct issuance_req_error *err)
{
	memset(out, 0, sizeof *out);
	out->certificate = -1;
	if (err != NULL)
		memset(err, 0, sizeof *err);
	if (body == NULL || len == 0)
		return req_fail(err, ISSUANCE_REQ_INVALID, "", "the request body is empty");

	json_error_t jerr;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		/* jerr.text quotes the input; only the kind and the position are reported. */
		const char *why;
		int status = ISSUANCE_REQ_INVALID;
		switch (json_error_code(&jerr)) {
		case json_error_out_of_memory:
			why = "out of memory while parsing JSON";
			status = ISSUANCE_REQ_NOMEM;
			break;
		case json_error_duplicate_key:
			why = "a key appears twice in one object";
			break;
		case json_error_invalid_utf8:
			why = "the body is not valid UTF-8";
			break;
		case json_error_null_character:
		case json_error_null_byte_in_key:
			why = "a string contains a NUL character";
			break;
		case json_error_numeric_overflow:
			why = "a number is out of range";
			break;
		case json_error_premature_end_of_input:
			why = "the body ends inside the JSON object";
			break;
		case json_error_end_of_input_expected:
			why = "there is more after the JSON object";
			break;
		case json_error_wrong_type:
			why = "the body must be a JSON object";
			break;
		default:
			why = "malformed JSON";
			break;
		}
		return req_fail(err, status, "", "%s (line %d, column %d)", why, jerr.line,
				jerr.column);
	}
	int rc;
	if (!json_is_object(root))
		rc = req_fail(err, ISSUANCE_REQ_INVALID, "", "the body must be a JSON object");
	else
		rc = req_fields(root, flags, out, err);
	json_decref(root);
	if (rc != ISSUANCE_REQ_OK) {
		memset(out, 0, sizeof *out);
		out->certificate = -1;
	}
	return rc;
}

const char *issuance_req_status_code(int status)
{
	switch (status) {
	case ISSUANCE_REQ_OK:
		return "OK";
	case ISSUANCE_REQ_UNSUPPORTED:
		return "UNSUPPORTED_CERTIFICATE";
	case ISSUANCE_REQ_NOMEM:
		return "INTERNAL_ERROR";
	default:
		return "INVALID_REQUEST";
	}
}
