/*
 * verify.c: may this record become a document (contract in verify.h; the issuable rules in
 * docs/records.md).  No state: every function is a pure function of its arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify.h"

static enum verify_outcome verify_fail(enum verify_outcome o, char *reason, size_t size,
				       const char *text)
{
	if (reason != NULL && size > 0)
		snprintf(reason, size, "%s", text);
	return o;
}

static const char *verify_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

int verify_current_fiscal_year(time_t now)
{
	time_t jst = now + 9 * 3600;
	struct tm tm;
	gmtime_r(&jst, &tm);
	int year = tm.tm_year + 1900;
	return tm.tm_mon + 1 >= 6 ? year : year - 1;
}

/* The type's own state (the status being active is checked before). */
static const char *verify_type_state(const json_t *rec, const char *certificate, time_t now)
{
	if (strcmp(certificate, "seal") == 0) {
		const char *s = verify_str(rec, "seal_status");
		return s != NULL && strcmp(s, "registered") == 0
			   ? NULL
			   : "the seal registration is not in force";
	}
	if (strcmp(certificate, "tax-income") == 0) {
		const char *fy = verify_str(rec, "fiscal_year");
		char want[16];
		snprintf(want, sizeof want, "%d", verify_current_fiscal_year(now));
		return fy != NULL && strcmp(fy, want) == 0
			   ? NULL
			   : "the tax record is not of the current fiscal year";
	}
	if (strncmp(certificate, "koseki-", 7) == 0) {
		const char *subject = verify_str(rec, "subject_person_no");
		size_t i;
		const json_t *p;
		if (subject == NULL)
			return "the register names no subject person";
		json_array_foreach(json_object_get(rec, "persons"), i, p)
		{
			const char *no = verify_str(p, "person_no");
			if (no == NULL || strcmp(no, subject) != 0)
				continue;
			/* An attachment (附票) lists persons without a state: being listed is it.
			 */
			if (strcmp(certificate, "koseki-attachment") == 0)
				return NULL;
			const char *state = verify_str(p, "state");
			return state != NULL && strcmp(state, "present") == 0
				   ? NULL
				   : "the subject person is removed from the register";
		}
		return "the register does not hold the subject person";
	}
	return NULL; /* residence types: the status alone decides */
}

enum verify_outcome verify_record(const mdg_record *record, const struct verify_expect *exp,
				  char *reason, size_t reason_size)
{
	const char *code = record_resident_code(record);
	const char *cert = record_certificate(record);
	if (code == NULL || exp->resident_code == NULL || strcmp(code, exp->resident_code) != 0)
		return verify_fail(VERIFY_INTEGRITY_FAULT, reason, reason_size,
				   "the record is of another resident than the card's");
	if (cert == NULL || strcmp(cert, exp->certificate) != 0)
		return verify_fail(VERIFY_INTEGRITY_FAULT, reason, reason_size,
				   "the record is of another certificate type than requested");

	const char *status = record_status(record);
	if (status == NULL || strcmp(status, "active") != 0)
		return verify_fail(VERIFY_NOT_ISSUABLE, reason, reason_size,
				   "the resident's record is not active (moved out, deceased or "
				   "deleted)");
	const char *why = verify_type_state(record_json(record), exp->certificate, exp->now);
	if (why != NULL)
		return verify_fail(VERIFY_NOT_ISSUABLE, reason, reason_size, why);

	if (record_version(record) < exp->version_floor)
		return verify_fail(VERIFY_NOT_CURRENT, reason, reason_size,
				   "the record's version is below a change already announced");
	int64_t as_of = record_as_of(record);
	int64_t age_ms = ((int64_t)exp->now - as_of) * 1000;
	if (age_ms > (int64_t)exp->max_age_ms)
		return verify_fail(VERIFY_NOT_CURRENT, reason, reason_size,
				   "the record's as_of is older than the type's freshness bound");
	if (as_of > (int64_t)exp->now + VERIFY_FUTURE_ALLOWANCE_S)
		return verify_fail(VERIFY_NOT_CURRENT, reason, reason_size,
				   "the record's as_of lies in the future");
	return VERIFY_OK;
}

const char *verify_outcome_code(enum verify_outcome outcome)
{
	switch (outcome) {
	case VERIFY_INTEGRITY_FAULT:
		return "INTEGRITY_FAULT";
	case VERIFY_NOT_ISSUABLE:
		return "RECORD_NOT_ISSUABLE";
	case VERIFY_NOT_CURRENT:
		return "DATA_NOT_CURRENT";
	default:
		return NULL;
	}
}
