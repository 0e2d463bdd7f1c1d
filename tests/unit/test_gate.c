/*
 * test_gate.c: the kill switch's gate as it stands (core/gate.c): automatic suspensions.
 *
 * What must hold: an automatic suspension stops the plugin for every type and municipality,
 * at step 7 and at step 13 (it is immediate), and no other plugin; a second fault keeps the
 * first one's time and reason; a persisted suspension is in force after reopening the store;
 * only an acknowledgement lifts it; an unusable store is an error at open.
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

#include "gate.h"
#include "tmp_db.h"

static const char *db;

static int setup(void **state)
{
	(void)state;
	db = tmp_db_make("mdg-gate", "gate.sqlite");
	return db != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tmp_db_remove();
	return 0;
}

static void an_auto_suspension_stops_one_plugin_everywhere_and_at_once(void **state)
{
	(void)state;
	struct gate *g = gate_new();
	struct gate_verdict v;
	assert_non_null(g);
	assert_false(gate_check(g, "vendor", "1.0.0", "koseki-full", "141003", false, &v));
	assert_int_equal(gate_suspend_auto(g, "vendor", "integrity fault", 1000), 1);
	assert_true(gate_check(g, "vendor", "1.0.0", "koseki-full", "141003", false, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_string_equal(gate_source_name(v.source), "auto");
	assert_true(v.immediate);
	assert_int_equal(v.since, 1000);
	/* Every type and municipality, at step 13 too; the other plugin serves. */
	assert_true(gate_check(g, "vendor", "2.0.0", "residence", "999999", true, &v));
	assert_false(gate_check(g, "registry", "1.0.0", "koseki-full", "141003", false, &v));
	/* A second fault keeps the first one's time and reason. */
	assert_int_equal(gate_suspend_auto(g, "vendor", "another", 2000), 0);
	assert_true(gate_check(g, "vendor", "1.0.0", "seal", "141003", false, &v));
	assert_int_equal(v.since, 1000);
	assert_string_equal(v.reason, "integrity fault");
	/* Only an acknowledgement lifts it. */
	assert_false(gate_acknowledge_auto(g, "registry"));
	assert_true(gate_acknowledge_auto(g, "vendor"));
	assert_false(gate_check(g, "vendor", "1.0.0", "seal", "141003", false, &v));
	gate_free(g);
}

static void a_persisted_suspension_is_in_force_after_reopening(void **state)
{
	(void)state;
	char err[256];
	struct gate *g = NULL;
	struct gate_verdict v;
	assert_int_equal(gate_open(db, &g, err, sizeof err), 0);
	assert_false(gate_check(g, "vendor", "1.0.0", "residence", "141003", false, &v));
	assert_int_equal(gate_suspend_auto(g, "vendor", "integrity fault", 1234), 1);
	assert_int_equal(gate_persist_auto(db, "vendor", "integrity fault", 1234, err, sizeof err),
			 0);
	/* Persisting again is harmless. */
	assert_int_equal(gate_persist_auto(db, "vendor", "integrity fault", 1234, err, sizeof err),
			 0);
	gate_free(g);
	assert_int_equal(gate_open(db, &g, err, sizeof err), 0);
	assert_true(gate_check(g, "vendor", "1.0.0", "residence", "141003", false, &v));
	assert_int_equal(v.source, GATE_AUTO);
	assert_int_equal(v.since, 1234);
	assert_string_equal(v.reason, "integrity fault");
	gate_free(g);
}

static void an_unusable_store_is_an_error(void **state)
{
	(void)state;
	char err[256];
	struct gate *g = (struct gate *)1;
	assert_int_equal(gate_open("/nonexistent-dir/gate.sqlite", &g, err, sizeof err), -1);
	assert_null(g);
	assert_non_null(strstr(err, "suspension store"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(an_auto_suspension_stops_one_plugin_everywhere_and_at_once),
	    cmocka_unit_test_setup_teardown(a_persisted_suspension_is_in_force_after_reopening,
					    setup, teardown),
	    cmocka_unit_test(an_unusable_store_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
