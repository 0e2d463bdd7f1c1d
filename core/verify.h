/*
 * verify.h: step 11 of the issuance pipeline (DESIGN §3): may this record become a document?
 *
 * verify_record() checks, in this order, and stops at the first failure:
 *
 *   1. identity: the record's resident code equals the one the card is linked to, and its
 *      certificate type is the one requested; else VERIFY_INTEGRITY_FAULT (incident I2: the
 *      backend answered for someone or something else; the caller suspends the plugin);
 *   2. issuable: the rules of docs/records.md "Issuable" for the type; else
 *      VERIFY_NOT_ISSUABLE (incident I4);
 *   3. version: not below the resident's high-water mark from change notifications; else
 *      VERIFY_NOT_CURRENT (incident I3);
 *   4. freshness: as_of no older than the type's bound (and not in the future beyond a small
 *      clock allowance); else VERIFY_NOT_CURRENT (incident I5).
 *
 * Pure functions of their arguments: any thread.  The reason texts name the rule, never a
 * value of the record.
 */
#ifndef MDG_VERIFY_H
#define MDG_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "record.h"

enum verify_outcome {
	VERIFY_OK = 0,
	VERIFY_INTEGRITY_FAULT, /* 500 INTEGRITY_FAULT */
	VERIFY_NOT_ISSUABLE,	/* 422 RECORD_NOT_ISSUABLE */
	VERIFY_NOT_CURRENT,	/* 503 DATA_NOT_CURRENT */
};

/* What the request expects of the record. */
struct verify_expect {
	const char *resident_code; /* from the linkage table */
	const char *certificate;   /* requested type */
	uint64_t version_floor;	   /* highest notified version (0: none known) */
	uint64_t max_age_ms;	   /* the type's freshness bound */
	time_t now;
};

/* Seconds an as_of may lie in the future (clocks of backend and appliance differ a little). */
#define VERIFY_FUTURE_ALLOWANCE_S 60

/* Checks record against exp; fills reason (for logs and problem details) when not VERIFY_OK. */
enum verify_outcome verify_record(const mdg_record *record, const struct verify_expect *exp,
				  char *reason, size_t reason_size);

/* The DESIGN §4 problem code of an outcome ("INTEGRITY_FAULT", …; NULL for VERIFY_OK). */
const char *verify_outcome_code(enum verify_outcome outcome);

/* The current fiscal year of resident tax at now (Tokyo time): from June of Y it is Y. */
int verify_current_fiscal_year(time_t now);

#endif
