/*
 * fuzz_issuance_req.c: libFuzzer target for the body of POST /v1/issuances
 * (core/issuance_req.c, DESIGN §4).
 *
 * The input is the body.  It is parsed as the store listener does, without and with a
 * center-asserted subject; whatever comes out must keep the header's promises: a success has
 * every field in range and NUL-terminated, a failure leaves the output zeroed (certificate -1) and
 * an error message that fits its buffer.  The whole input is also tried as a requested_at
 * timestamp.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "issuance_req.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t cap, size_t min)
{
	size_t n = strnlen(s, cap + 1);
	if (n > cap || n < min)
		abort();
}

static void check(int rc, const struct issuance_req *r, const struct issuance_req_error *err)
{
	static const struct issuance_req zero = {.certificate = -1};
	if (rc != ISSUANCE_REQ_OK) {
		if (rc != ISSUANCE_REQ_INVALID && rc != ISSUANCE_REQ_UNSUPPORTED &&
		    rc != ISSUANCE_REQ_NOMEM)
			abort();
		if (memcmp(r, &zero, sizeof zero) != 0)
			abort();
		check_string(err->field, sizeof err->field - 1, 0);
		check_string(err->message, sizeof err->message - 1, 1);
		if (issuance_req_status_code(rc) == NULL)
			abort();
		return;
	}
	check_string(r->request_id, ISSUANCE_REQUEST_ID_MAX, 1);
	check_string(r->municipality, ISSUANCE_MUNICIPALITY_LEN, ISSUANCE_MUNICIPALITY_LEN);
	if (r->certificate < 0 || r->certificate >= RECORD_CERTIFICATE_TYPE_COUNT ||
	    r->certificate_name != record_certificate_types[r->certificate])
		abort();
	if (r->copies < 1 || r->copies > ISSUANCE_COPIES_MAX)
		abort();
	check_string(r->terminal_operator, ISSUANCE_TERMINAL_MAX, 1);
	check_string(r->terminal_store, ISSUANCE_TERMINAL_MAX, 1);
	check_string(r->terminal_kiosk, ISSUANCE_TERMINAL_MAX, 1);
	if (r->has_subject)
		check_string(r->subject_card_serial, ISSUANCE_CARD_SERIAL_MAX, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct issuance_req req;
	struct issuance_req_error err;
	const char *body = (const char *)data;

	check(issuance_req_parse(body, size, 0, &req, &err), &req, &err);
	int rc = issuance_req_parse(body, size, ISSUANCE_REQ_ALLOW_SUBJECT, &req, &err);
	check(rc, &req, &err);
	if (rc == ISSUANCE_REQ_OK && !req.has_subject) {
		/* Without a subject the flag must not change the answer. */
		struct issuance_req plain;
		if (issuance_req_parse(body, size, 0, &plain, NULL) != ISSUANCE_REQ_OK ||
		    memcmp(&plain, &req, sizeof req) != 0)
			abort();
	}

	time_t t;
	(void)issuance_req_parse_time(body, size, &t);
	return 0;
}
