/*
 * test_issuance_req.c: the strict parse of the issuance request body (core/issuance_req.c).
 *
 * The DESIGN §4 example parses into every field; optional members take their defaults; every
 * kind of bad body (malformed, duplicate key, missing, unknown, wrong type, bad value, subject
 * without center-asserted mode) is refused with the right status and the field's path; and no
 * error text ever contains the offending value.  Environment: none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "issuance_req.h"

#define EXAMPLE                                                                                    \
	"{\"request_id\": \"4b0e7a52-8f5e-4d1c-9a51-3f2f1c9a7e10\", "                              \
	"\"requested_at\": \"2026-11-27T09:00:00Z\", \"municipality\": \"141003\", "               \
	"\"certificate\": \"residence\", \"copies\": 1, "                                          \
	"\"options\": {\"household\": false, \"show_my_number\": false, \"show_domicile\": "       \
	"false}, "                                                                                 \
	"\"terminal\": {\"operator\": \"chain-a\", \"store\": \"012345\", \"kiosk\": \"01\"}}"

/* The minimal valid body with `extra` spliced in before the terminal (extra ends in ", "). */
static char *body_with(const char *extra)
{
	static char buf[4096];
	snprintf(buf, sizeof buf,
		 "{\"request_id\": \"r-1\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		 "\"municipality\": \"141003\", \"certificate\": \"seal\", %s"
		 "\"terminal\": {\"operator\": \"chain-a\", \"store\": \"012345\", \"kiosk\": "
		 "\"01\"}}",
		 extra);
	return buf;
}

static int parse(const char *body, unsigned flags, struct issuance_req *req,
		 struct issuance_req_error *err)
{
	return issuance_req_parse(body, strlen(body), flags, req, err);
}

/* body must be refused with status, naming field, and the message must not contain secret. */
static void assert_refused(const char *body, unsigned flags, int status, const char *field)
{
	struct issuance_req req;
	struct issuance_req_error err;
	int rc = parse(body, flags, &req, &err);
	if (rc != status || strcmp(err.field, field) != 0)
		print_error("body %s\n -> %d field '%s' message '%s' (want %d '%s')\n", body, rc,
			    err.field, err.message, status, field);
	assert_int_equal(rc, status);
	assert_string_equal(err.field, field);
	assert_true(err.message[0] != '\0');
	assert_null(strstr(err.message, "SECRET"));
	assert_null(strstr(err.field, "SECRET"));
	assert_int_equal(req.request_id[0], '\0');
	assert_int_equal(req.certificate, -1);
}

static void the_design_example_parses_into_every_field(void **state)
{
	(void)state;
	struct issuance_req req;
	struct issuance_req_error err;
	assert_int_equal(parse(EXAMPLE, 0, &req, &err), ISSUANCE_REQ_OK);
	assert_string_equal(req.request_id, "4b0e7a52-8f5e-4d1c-9a51-3f2f1c9a7e10");
	assert_int_equal(req.requested_at, 1795770000); /* 2026-11-27T09:00:00Z */
	assert_string_equal(req.municipality, "141003");
	assert_int_equal(req.certificate, 0);
	assert_string_equal(req.certificate_name, "residence");
	assert_int_equal(req.copies, 1);
	assert_false(req.household);
	assert_false(req.show_my_number);
	assert_false(req.show_domicile);
	assert_string_equal(req.terminal_operator, "chain-a");
	assert_string_equal(req.terminal_store, "012345");
	assert_string_equal(req.terminal_kiosk, "01");
	assert_false(req.has_subject);
}

static void absent_copies_and_options_take_their_defaults(void **state)
{
	(void)state;
	struct issuance_req req;
	struct issuance_req_error err;
	assert_int_equal(parse(body_with(""), 0, &req, &err), ISSUANCE_REQ_OK);
	assert_int_equal(req.copies, 1);
	assert_false(req.household || req.show_my_number || req.show_domicile);
	assert_string_equal(req.certificate_name, "seal");

	assert_int_equal(
	    parse(body_with("\"copies\": 10, \"options\": {\"household\": true}, "), 0, &req, &err),
	    ISSUANCE_REQ_OK);
	assert_int_equal(req.copies, 10);
	assert_true(req.household);
	assert_false(req.show_my_number);
	assert_false(req.show_domicile);

	assert_int_equal(parse(body_with("\"options\": {\"show_my_number\": true, "
					 "\"show_domicile\": true}, "),
			       0, &req, &err),
			 ISSUANCE_REQ_OK);
	assert_false(req.household);
	assert_true(req.show_my_number && req.show_domicile);
}

static void every_certificate_type_is_accepted(void **state)
{
	(void)state;
	static const char *const types[] = {
	    "residence",	 "residence-record", "seal", "tax-income", "koseki-full",
	    "koseki-individual", "koseki-attachment"};
	for (int i = 0; i < 7; i++) {
		char body[512];
		snprintf(body, sizeof body,
			 "{\"request_id\": \"a\", \"requested_at\": \"2026-01-01T00:00:00Z\", "
			 "\"municipality\": \"000000\", \"certificate\": \"%s\", \"terminal\": "
			 "{\"operator\": \" \", \"store\": \"~\", \"kiosk\": \"x\"}}",
			 types[i]);
		struct issuance_req req;
		struct issuance_req_error err;
		assert_int_equal(parse(body, 0, &req, &err), ISSUANCE_REQ_OK);
		assert_int_equal(req.certificate, i);
		assert_string_equal(req.certificate_name, types[i]);
	}
}

static void the_body_need_not_be_nul_terminated(void **state)
{
	(void)state;
	size_t n = strlen(EXAMPLE);
	char *copy = malloc(n);
	assert_non_null(copy);
	memcpy(copy, EXAMPLE, n);
	struct issuance_req req;
	struct issuance_req_error err;
	assert_int_equal(issuance_req_parse(copy, n, 0, &req, &err), ISSUANCE_REQ_OK);
	/* A prefix of a valid body is malformed, not read past. */
	assert_int_equal(issuance_req_parse(copy, n - 1, 0, &req, &err), ISSUANCE_REQ_INVALID);
	free(copy);
}

static void malformed_bodies_are_refused_without_quoting_them(void **state)
{
	(void)state;
	assert_refused("", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("{\"request_id\": \"SECRET", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("{\"request_id\": SECRET}", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("SECRET", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("[\"SECRET\"]", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("\"SECRET\"", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused(EXAMPLE " {\"SECRET\": 1}", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("{\"request_id\": \"SECRET\xff\"}", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused("{\"request_id\": \"SECRET\\u0000\"}", 0, ISSUANCE_REQ_INVALID, "");
	assert_refused(body_with("\"copies\": 99999999999999999999999, "), 0, ISSUANCE_REQ_INVALID,
		       "");
}

static void a_duplicate_key_is_refused(void **state)
{
	(void)state;
	assert_refused(body_with("\"certificate\": \"koseki-full\", "), 0, ISSUANCE_REQ_INVALID,
		       "");
	assert_refused(body_with("\"options\": {\"household\": true, \"household\": false}, "), 0,
		       ISSUANCE_REQ_INVALID, "");
}

static void a_missing_required_field_is_named(void **state)
{
	(void)state;
	assert_refused("{\"requested_at\": \"2026-11-27T09:00:00Z\", \"municipality\": "
		       "\"141003\", \"certificate\": \"seal\", \"terminal\": {\"operator\": \"a\", "
		       "\"store\": \"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "request_id");
	assert_refused("{\"request_id\": \"r\", \"municipality\": \"141003\", \"certificate\": "
		       "\"seal\", \"terminal\": {\"operator\": \"a\", \"store\": \"b\", \"kiosk\": "
		       "\"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "requested_at");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"certificate\": \"seal\", \"terminal\": {\"operator\": \"a\", \"store\": "
		       "\"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "municipality");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"terminal\": {\"operator\": \"a\", "
		       "\"store\": \"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "certificate");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": \"seal\"}",
		       0, ISSUANCE_REQ_INVALID, "terminal");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
		       "{\"operator\": \"a\", \"store\": \"b\"}}",
		       0, ISSUANCE_REQ_INVALID, "terminal.kiosk");
}

static void an_unknown_field_at_any_level_is_named(void **state)
{
	(void)state;
	assert_refused(body_with("\"colour\": \"SECRET\", "), 0, ISSUANCE_REQ_INVALID, "colour");
	assert_refused(body_with("\"options\": {\"household\": false, \"lang\": \"SECRET\"}, "), 0,
		       ISSUANCE_REQ_INVALID, "options.lang");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
		       "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\", \"till\": 3}}",
		       0, ISSUANCE_REQ_INVALID, "terminal.till");
	/* A key that is not a plain identifier is not quoted back: it could be anything. */
	assert_refused(body_with("\"SECRET name\": 1, "), 0, ISSUANCE_REQ_INVALID, "");
	assert_refused(body_with("\"options\": {\"SECRET\\n\": true}, "), 0, ISSUANCE_REQ_INVALID,
		       "options");
	/* Known names are case-sensitive. */
	assert_refused(body_with("\"Copies\": 1, "), 0, ISSUANCE_REQ_INVALID, "Copies");
}

static void a_wrong_type_is_named(void **state)
{
	(void)state;
	assert_refused(body_with("\"copies\": \"1\", "), 0, ISSUANCE_REQ_INVALID, "copies");
	assert_refused(body_with("\"copies\": 1.0, "), 0, ISSUANCE_REQ_INVALID, "copies");
	assert_refused(body_with("\"copies\": true, "), 0, ISSUANCE_REQ_INVALID, "copies");
	assert_refused(body_with("\"options\": {\"household\": \"SECRET\"}, "), 0,
		       ISSUANCE_REQ_INVALID, "options.household");
	assert_refused(body_with("\"options\": {\"show_domicile\": 0}, "), 0, ISSUANCE_REQ_INVALID,
		       "options.show_domicile");
	assert_refused(body_with("\"options\": [true], "), 0, ISSUANCE_REQ_INVALID, "options");
	assert_refused(body_with("\"options\": null, "), 0, ISSUANCE_REQ_INVALID, "options");
	assert_refused("{\"request_id\": 12, \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
		       "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "request_id");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": 141003, \"certificate\": \"seal\", \"terminal\": "
		       "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "municipality");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": 5, \"terminal\": "
		       "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "certificate");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
		       "\"SECRET\"}",
		       0, ISSUANCE_REQ_INVALID, "terminal");
	assert_refused("{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
		       "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
		       "{\"operator\": \"a\", \"store\": 12345, \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "terminal.store");
}

/* A body whose request_id is id (a JSON string body, quotes included by the caller). */
static const char *body_with_id(const char *id_json)
{
	static char buf[1024];
	snprintf(buf, sizeof buf,
		 "{\"request_id\": %s, \"requested_at\": \"2026-11-27T09:00:00Z\", "
		 "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
		 "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\"}}",
		 id_json);
	return buf;
}

static void request_ids_are_1_to_64_safe_characters(void **state)
{
	(void)state;
	struct issuance_req req;
	struct issuance_req_error err;
	char id[80];
	memset(id, 'a', 64);
	id[64] = '\0';
	char quoted[100];
	snprintf(quoted, sizeof quoted, "\"%s\"", id);
	assert_int_equal(parse(body_with_id(quoted), 0, &req, &err), ISSUANCE_REQ_OK);
	assert_string_equal(req.request_id, id);
	assert_int_equal(parse(body_with_id("\"A.z_0-9\""), 0, &req, &err), ISSUANCE_REQ_OK);

	snprintf(quoted, sizeof quoted, "\"%sa\"", id);
	assert_refused(body_with_id(quoted), 0, ISSUANCE_REQ_INVALID, "request_id");
	assert_refused(body_with_id("\"\""), 0, ISSUANCE_REQ_INVALID, "request_id");
	assert_refused(body_with_id("\"SECRET 1\""), 0, ISSUANCE_REQ_INVALID, "request_id");
	assert_refused(body_with_id("\"SECRET/1\""), 0, ISSUANCE_REQ_INVALID, "request_id");
	assert_refused(body_with_id("\"SECRET\\u00e9\""), 0, ISSUANCE_REQ_INVALID, "request_id");
}

static const char *body_with_time(const char *t)
{
	static char buf[1024];
	snprintf(buf, sizeof buf,
		 "{\"request_id\": \"r\", \"requested_at\": \"%s\", \"municipality\": \"141003\", "
		 "\"certificate\": \"seal\", \"terminal\": {\"operator\": \"a\", \"store\": \"b\", "
		 "\"kiosk\": \"c\"}}",
		 t);
	return buf;
}

static void requested_at_is_strict_rfc3339_utc(void **state)
{
	(void)state;
	time_t t;
	assert_int_equal(issuance_req_parse_time("1970-01-01T00:00:00Z", 20, &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(issuance_req_parse_time("2024-02-29T23:59:59Z", 20, &t), 0);
	assert_int_equal(t, 1709251199);
	assert_int_equal(issuance_req_parse_time("2026-11-27T09:00:00.999999999Z", 30, &t), 0);
	assert_int_equal(t, 1795770000);
	assert_int_equal(issuance_req_parse_time("2026-11-27T09:00:00.5Z", 22, &t), 0);
	assert_int_equal(t, 1795770000);

	static const char *const bad[] = {
	    "2025-02-29T00:00:00Z", /* not a leap year */
	    "2026-04-31T00:00:00Z", /* no 31 April */
	    "2026-13-01T00:00:00Z",
	    "2026-00-01T00:00:00Z",
	    "2026-01-00T00:00:00Z",
	    "2026-01-01T24:00:00Z",
	    "2026-01-01T00:60:00Z",
	    "2026-01-01T00:00:60Z",
	    "2026-01-01t00:00:00Z",
	    "2026-01-01T00:00:00z",
	    "2026-01-01 00:00:00Z",
	    "2026-01-01T00:00:00",
	    "2026-01-01T00:00:00+09:00",
	    "2026-01-01T00:00:00.Z",
	    "2026-01-01T00:00:00.1234567890Z",
	    "2026-1-01T00:00:00Z",
	    "+2026-01-01T00:00:00Z",
	    "2026-01-01T00:00:00Z ",
	    "0000-01-01T00:00:00Z",
	    "2026-01-01T0a:00:00Z",
	    "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (issuance_req_parse_time(bad[i], strlen(bad[i]), &t) == 0)
			print_error("accepted %s\n", bad[i]);
		assert_int_equal(issuance_req_parse_time(bad[i], strlen(bad[i]), &t), -1);
		assert_refused(body_with_time(bad[i]), 0, ISSUANCE_REQ_INVALID, "requested_at");
	}
	assert_refused("{\"request_id\": \"r\", \"requested_at\": 1795770000, \"municipality\": "
		       "\"141003\", \"certificate\": \"seal\", \"terminal\": {\"operator\": \"a\", "
		       "\"store\": \"b\", \"kiosk\": \"c\"}}",
		       0, ISSUANCE_REQ_INVALID, "requested_at");
}

static void bad_values_are_refused_by_field(void **state)
{
	(void)state;
	assert_refused(body_with("\"copies\": 0, "), 0, ISSUANCE_REQ_INVALID, "copies");
	assert_refused(body_with("\"copies\": 11, "), 0, ISSUANCE_REQ_INVALID, "copies");
	assert_refused(body_with("\"copies\": -1, "), 0, ISSUANCE_REQ_INVALID, "copies");

	static const char *const municipalities[] = {"\"14100\"", "\"1410033\"", "\"14100a\"",
						     "\"\"",	  "\"-14100\"",	 "\"14100 \""};
	for (size_t i = 0; i < sizeof municipalities / sizeof municipalities[0]; i++) {
		char body[512];
		snprintf(body, sizeof body,
			 "{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
			 "\"municipality\": %s, \"certificate\": \"seal\", \"terminal\": "
			 "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\"}}",
			 municipalities[i]);
		assert_refused(body, 0, ISSUANCE_REQ_INVALID, "municipality");
	}

	char long_store[70];
	memset(long_store, 's', 65);
	long_store[65] = '\0';
	static const char *const stores[] = {"", "SECRET\\t", "SECRET\\u00e9", "SECRET\\u007f",
					     NULL};
	for (size_t i = 0; i < sizeof stores / sizeof stores[0]; i++) {
		char body[512];
		snprintf(body, sizeof body,
			 "{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
			 "\"municipality\": \"141003\", \"certificate\": \"seal\", \"terminal\": "
			 "{\"operator\": \"a\", \"store\": \"%s\", \"kiosk\": \"c\"}}",
			 stores[i] ? stores[i] : long_store);
		assert_refused(body, 0, ISSUANCE_REQ_INVALID, "terminal.store");
	}
}

static void an_unknown_certificate_type_is_unsupported(void **state)
{
	(void)state;
	static const char *const types[] = {"passport", "Residence", "residence ", "",
					    "seal\\u0000"};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		char body[512];
		snprintf(body, sizeof body,
			 "{\"request_id\": \"r\", \"requested_at\": \"2026-11-27T09:00:00Z\", "
			 "\"municipality\": \"141003\", \"certificate\": \"%s\", \"terminal\": "
			 "{\"operator\": \"a\", \"store\": \"b\", \"kiosk\": \"c\"}}",
			 types[i]);
		struct issuance_req req;
		struct issuance_req_error err;
		int rc = parse(body, 0, &req, &err);
		/* The NUL escape is refused by the JSON layer already. */
		assert_int_equal(rc, i == 4 ? ISSUANCE_REQ_INVALID : ISSUANCE_REQ_UNSUPPORTED);
	}
	assert_string_equal(issuance_req_status_code(ISSUANCE_REQ_UNSUPPORTED),
			    "UNSUPPORTED_CERTIFICATE");
	assert_string_equal(issuance_req_status_code(ISSUANCE_REQ_INVALID), "INVALID_REQUEST");
}

static void subject_is_accepted_only_in_center_asserted_mode(void **state)
{
	(void)state;
	const char *with_subject = body_with("\"subject\": {\"card_serial\": \"1A2B\"}, ");
	char copy[4096];
	snprintf(copy, sizeof copy, "%s", with_subject);
	assert_refused(copy, 0, ISSUANCE_REQ_INVALID, "subject");

	struct issuance_req req;
	struct issuance_req_error err;
	assert_int_equal(parse(copy, ISSUANCE_REQ_ALLOW_SUBJECT, &req, &err), ISSUANCE_REQ_OK);
	assert_true(req.has_subject);
	assert_string_equal(req.subject_card_serial, "1A2B");
	assert_int_equal(parse(body_with("\"subject\": {\"card_serial\": \"0\"}, "),
			       ISSUANCE_REQ_ALLOW_SUBJECT, &req, &err),
			 ISSUANCE_REQ_OK);
	assert_string_equal(req.subject_card_serial, "0");
	/* Allowed, not required. */
	assert_int_equal(parse(EXAMPLE, ISSUANCE_REQ_ALLOW_SUBJECT, &req, &err), ISSUANCE_REQ_OK);
	assert_false(req.has_subject);

	static const char *const bad[] = {"\"01A2B\"", "\"1a2b\"", "\"\"",
					  "\"1A2G\"",  "12",	   "\"00\""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char extra[128];
		snprintf(extra, sizeof extra, "\"subject\": {\"card_serial\": %s}, ", bad[i]);
		assert_refused(body_with(extra), ISSUANCE_REQ_ALLOW_SUBJECT, ISSUANCE_REQ_INVALID,
			       "subject.card_serial");
	}
	char serial[50];
	memset(serial, 'F', 41);
	serial[41] = '\0';
	char extra[128];
	snprintf(extra, sizeof extra, "\"subject\": {\"card_serial\": \"%s\"}, ", serial);
	assert_refused(body_with(extra), ISSUANCE_REQ_ALLOW_SUBJECT, ISSUANCE_REQ_INVALID,
		       "subject.card_serial");
	assert_refused(body_with("\"subject\": {}, "), ISSUANCE_REQ_ALLOW_SUBJECT,
		       ISSUANCE_REQ_INVALID, "subject.card_serial");
	assert_refused(body_with("\"subject\": {\"card_serial\": \"1\", \"name\": \"SECRET\"}, "),
		       ISSUANCE_REQ_ALLOW_SUBJECT, ISSUANCE_REQ_INVALID, "subject.name");
	assert_refused(body_with("\"subject\": \"SECRET\", "), ISSUANCE_REQ_ALLOW_SUBJECT,
		       ISSUANCE_REQ_INVALID, "subject");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(the_design_example_parses_into_every_field),
	    cmocka_unit_test(absent_copies_and_options_take_their_defaults),
	    cmocka_unit_test(every_certificate_type_is_accepted),
	    cmocka_unit_test(the_body_need_not_be_nul_terminated),
	    cmocka_unit_test(malformed_bodies_are_refused_without_quoting_them),
	    cmocka_unit_test(a_duplicate_key_is_refused),
	    cmocka_unit_test(a_missing_required_field_is_named),
	    cmocka_unit_test(an_unknown_field_at_any_level_is_named),
	    cmocka_unit_test(a_wrong_type_is_named),
	    cmocka_unit_test(request_ids_are_1_to_64_safe_characters),
	    cmocka_unit_test(requested_at_is_strict_rfc3339_utc),
	    cmocka_unit_test(bad_values_are_refused_by_field),
	    cmocka_unit_test(an_unknown_certificate_type_is_unsupported),
	    cmocka_unit_test(subject_is_accepted_only_in_center_asserted_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
