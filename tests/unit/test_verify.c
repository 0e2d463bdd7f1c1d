/*
 * test_verify.c: step 11 of the pipeline (core/verify.c).
 *
 * What must hold: a record of another resident or another type is an integrity fault whatever
 * else it says; moved-out, deceased and deleted records are not issuable for any type; an
 * abolished seal, last year's tax record and a removed register subject are not issuable; a
 * version below the notified floor and an as_of older than the bound are not current; a fresh
 * active record passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "record.h"
#include "verify.h"

#define NOW ((time_t)1795741200) /* 2026-11-27 10:00 JST: fiscal year 2026 */

static struct verify_expect expect_for(const char *certificate)
{
	return (struct verify_expect){.resident_code = "12345678901",
				      .certificate = certificate,
				      .version_floor = 0,
				      .max_age_ms = 60000,
				      .now = NOW};
}

static mdg_record *rec(const char *certificate, const char *code, const char *status,
		       uint64_t version, int64_t as_of)
{
	mdg_record *r = record_new(NULL, certificate, code, version, status, as_of);
	assert_non_null(r);
	return r;
}

static enum verify_outcome check(mdg_record *r, const struct verify_expect *e)
{
	char reason[160];
	enum verify_outcome o = verify_record(r, e, reason, sizeof reason);
	if (o != VERIFY_OK) {
		/* The reason names a rule, never a value of the record. */
		assert_null(strstr(reason, "12345678901"));
		assert_null(strstr(reason, "99999999999"));
	}
	record_free(r);
	return o;
}

static void another_residents_record_is_an_integrity_fault(void **state)
{
	(void)state;
	struct verify_expect e = expect_for("residence");
	assert_int_equal(check(rec("residence", "99999999999", "active", 1, NOW), &e),
			 VERIFY_INTEGRITY_FAULT);
	/* Even when it would also be refused for other reasons. */
	assert_int_equal(check(rec("residence", "99999999999", "deceased", 1, 0), &e),
			 VERIFY_INTEGRITY_FAULT);
	assert_int_equal(check(rec("seal", "12345678901", "active", 1, NOW), &e),
			 VERIFY_INTEGRITY_FAULT);
	assert_string_equal(verify_outcome_code(VERIFY_INTEGRITY_FAULT), "INTEGRITY_FAULT");
}

static void inactive_records_are_not_issuable_for_any_type(void **state)
{
	(void)state;
	static const char *const statuses[] = {"moved-out", "deceased", "deleted"};
	for (int t = 0; t < RECORD_CERTIFICATE_TYPE_COUNT; t++) {
		struct verify_expect e = expect_for(record_certificate_types[t]);
		for (int s = 0; s < 3; s++)
			assert_int_equal(check(rec(record_certificate_types[t], "12345678901",
						   statuses[s], 1, NOW),
					       &e),
					 VERIFY_NOT_ISSUABLE);
	}
}

static void type_states_decide_what_is_issuable(void **state)
{
	(void)state;
	struct verify_expect seal = expect_for("seal");
	mdg_record *r = rec("seal", "12345678901", "active", 1, NOW);
	record_set(r, "seal_status", "abolished");
	assert_int_equal(check(r, &seal), VERIFY_NOT_ISSUABLE);
	r = rec("seal", "12345678901", "active", 1, NOW);
	record_set(r, "seal_status", "registered");
	assert_int_equal(check(r, &seal), VERIFY_OK);

	struct verify_expect tax = expect_for("tax-income");
	r = rec("tax-income", "12345678901", "active", 1, NOW);
	record_set(r, "fiscal_year", "2025");
	assert_int_equal(check(r, &tax), VERIFY_NOT_ISSUABLE);
	r = rec("tax-income", "12345678901", "active", 1, NOW);
	record_set(r, "fiscal_year", "2026");
	assert_int_equal(check(r, &tax), VERIFY_OK);
	assert_int_equal(verify_current_fiscal_year(1780239600), 2026); /* 2026-06-01 00:00 JST */
	assert_int_equal(verify_current_fiscal_year(1780239599), 2025);

	struct verify_expect kf = expect_for("koseki-full");
	const char *states[] = {"removed", "present"};
	for (int i = 0; i < 2; i++) {
		r = rec("koseki-full", "12345678901", "active", 1, NOW);
		record_set(r, "subject_person_no", "2");
		mdg_item *p = record_add_item(r, "persons");
		record_item_set(p, "person_no", "1");
		record_item_set(p, "state", "present");
		p = record_add_item(r, "persons");
		record_item_set(p, "person_no", "2");
		record_item_set(p, "state", states[i]);
		assert_int_equal(check(r, &kf), i == 0 ? VERIFY_NOT_ISSUABLE : VERIFY_OK);
	}

	/* An attachment lists its persons without a state: the subject being listed is it. */
	struct verify_expect ka = expect_for("koseki-attachment");
	for (int listed = 0; listed < 2; listed++) {
		r = rec("koseki-attachment", "12345678901", "active", 1, NOW);
		record_set(r, "subject_person_no", "2");
		mdg_item *p = record_add_item(r, "persons");
		record_item_set(p, "person_no", listed ? "2" : "1");
		assert_int_equal(check(r, &ka), listed ? VERIFY_OK : VERIFY_NOT_ISSUABLE);
	}
}

static void old_versions_and_old_data_are_not_current(void **state)
{
	(void)state;
	struct verify_expect e = expect_for("residence");
	e.version_floor = 5;
	assert_int_equal(check(rec("residence", "12345678901", "active", 4, NOW), &e),
			 VERIFY_NOT_CURRENT);
	assert_int_equal(check(rec("residence", "12345678901", "active", 5, NOW), &e), VERIFY_OK);
	assert_int_equal(check(rec("residence", "12345678901", "active", 5, NOW - 61), &e),
			 VERIFY_NOT_CURRENT);
	assert_int_equal(check(rec("residence", "12345678901", "active", 5, NOW - 60), &e),
			 VERIFY_OK);
	assert_int_equal(check(rec("residence", "12345678901", "active", 5, NOW + 3600), &e),
			 VERIFY_NOT_CURRENT);
	assert_string_equal(verify_outcome_code(VERIFY_NOT_CURRENT), "DATA_NOT_CURRENT");
	assert_null(verify_outcome_code(VERIFY_OK));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(another_residents_record_is_an_integrity_fault),
	    cmocka_unit_test(inactive_records_are_not_issuable_for_any_type),
	    cmocka_unit_test(type_states_decide_what_is_issuable),
	    cmocka_unit_test(old_versions_and_old_data_are_not_current),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
