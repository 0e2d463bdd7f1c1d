/*
 * issuance_req.h: the strict parse of a POST /v1/issuances body (DESIGN §3 step 3, §4).
 *
 * The body is one JSON object:
 *
 *   request_id    required  1..64 characters of [A-Za-z0-9._-] (a UUID fits)
 *   requested_at  required  RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ", optionally with 1..9 digits of
 *                           fractional seconds ("…:SS.123Z", truncated); upper-case T and Z only,
 *                           no offset other than Z, no leap second
 *   municipality  required  6 ASCII digits (whether this appliance serves it is the caller's
 *                           check: MUNICIPALITY_NOT_SERVED)
 *   certificate   required  one of the seven types of record_certificate_types
 *   copies        optional  integer 1..ISSUANCE_COPIES_MAX; absent means 1 (one copy is what a
 *                           kiosk asks for unless the resident says otherwise)
 *   options       optional  object; each of household, show_my_number, show_domicile optional,
 *                           boolean, absent means false; absent object means all false
 *   terminal      required  object with operator, store, kiosk: each 1..64 printable ASCII
 *   subject       only with ISSUANCE_REQ_ALLOW_SUBJECT (card_proof.mode center-asserted):
 *                           object {"card_serial": upper-case hex, no leading zeros, "0" for 0,
 *                           at most 40 digits}: the same spelling cardproof.h produces
 *
 * Anything else is refused: malformed JSON, a top level that is not an object, duplicate keys
 * (a signed body must mean one thing), unknown fields at any level, wrong JSON types (1.0 is
 * not an integer), bad values.  The error names the field by its path ("options.household")
 * and says what is wrong, never what the value was: values may be personal.  An unknown key is
 * named only when it is a plain identifier ([A-Za-z0-9_-], at most 32 characters); otherwise
 * the error names the object that holds it.
 *
 * Ownership: struct issuance_req holds everything in fixed buffers, so it owns nothing on the
 * heap, needs no free function and may be copied by value.  Thread-safe: no shared state.
 */
#ifndef MDG_ISSUANCE_REQ_H
#define MDG_ISSUANCE_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define ISSUANCE_REQUEST_ID_MAX	   64 /* characters of request_id */
#define ISSUANCE_MUNICIPALITY_LEN  6  /* digits of municipality */
#define ISSUANCE_TERMINAL_MAX	   64 /* characters of each terminal string */
#define ISSUANCE_CARD_SERIAL_MAX   40 /* hex digits of a card serial (RFC 5280: 20 octets) */
#define ISSUANCE_COPIES_MAX	   10 /* copies in one request */
#define ISSUANCE_REQ_ALLOW_SUBJECT 1u /* flag: accept subject (card_proof.mode center-asserted) */

enum issuance_req_status {
	ISSUANCE_REQ_OK = 0,
	ISSUANCE_REQ_INVALID = -1,     /* 400 INVALID_REQUEST */
	ISSUANCE_REQ_UNSUPPORTED = -2, /* 400 UNSUPPORTED_CERTIFICATE: certificate is a string
					  but not one of the seven types */
	ISSUANCE_REQ_NOMEM = -3,       /* out of memory while parsing: answer 500 */
};

struct issuance_req {
	char request_id[ISSUANCE_REQUEST_ID_MAX + 1];
	time_t requested_at; /* seconds since the epoch, fraction dropped */
	char municipality[ISSUANCE_MUNICIPALITY_LEN + 1];
	int certificate;	      /* index in record_certificate_types (record.h) */
	const char *certificate_name; /* record_certificate_types[certificate], static */
	unsigned copies;	      /* 1..ISSUANCE_COPIES_MAX */
	bool household;
	bool show_my_number;
	bool show_domicile;
	char terminal_operator[ISSUANCE_TERMINAL_MAX + 1];
	char terminal_store[ISSUANCE_TERMINAL_MAX + 1];
	char terminal_kiosk[ISSUANCE_TERMINAL_MAX + 1];
	bool has_subject; /* subject.card_serial was given (only with ..._ALLOW_SUBJECT) */
	char subject_card_serial[ISSUANCE_CARD_SERIAL_MAX + 1];
};

struct issuance_req_error {
	char field[64];	   /* path of the offending field, e.g. "options.household"; "" = body */
	char message[192]; /* what is wrong and what is expected; never the value */
};

/*
 * Parses body (len bytes, need not be NUL-terminated) into *out.  flags is 0 or
 * ISSUANCE_REQ_ALLOW_SUBJECT.  Returns ISSUANCE_REQ_OK with *out filled, or a negative
 * status with *err filled (err may be NULL) and *out zeroed, except certificate, which is -1
 * (no type).
 */
int issuance_req_parse(const char *body, size_t len, unsigned flags, struct issuance_req *out,
		       struct issuance_req_error *err);

/* The problem "code" member for a status: "INVALID_REQUEST", "UNSUPPORTED_CERTIFICATE", … */
const char *issuance_req_status_code(int status);

/*
 * Parses an RFC 3339 UTC timestamp of exactly len bytes as requested_at allows it.  Returns 0
 * with *out set, -1 when the text is not such a timestamp.  Exposed for the tests and for
 * other timestamps of the same shape.
 */
int issuance_req_parse_time(const char *text, size_t len, time_t *out);

#endif
