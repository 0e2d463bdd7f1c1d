/*
 * test_linkage.c: the linkage table (core/linkage.c).
 *
 * What must hold: a well-formed CSV (CRLF, a byte-order mark) parses; a wrong header, a
 * non-canonical serial, a bad resident code, a serial given twice and a line with three fields
 * are refused with the line number and without the values; an import is durable (a reopened
 * table has it); an update import changes and adds, a replace import also removes.
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

#include "linkage.h"
#include "tmp_db.h"

static const char *db;

static int setup(void **state)
{
	(void)state;
	db = tmp_db_make("mdg-linkage", "linkage.sqlite");
	return db != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tmp_db_remove();
	return 0;
}

/* Parses csv, which must be refused with a message containing want and not containing secret. */
static void refused(const char *csv, const char *want, const char *secret)
{
	struct linkage_batch *b = (struct linkage_batch *)1;
	char err[256];
	assert_int_equal(linkage_parse(csv, strlen(csv), &b, err, sizeof err), -1);
	assert_null(b);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' does not say '%s'", err, want);
	if (secret != NULL && strstr(err, secret) != NULL)
		fail_msg("error '%s' repeats the value '%s'", err, secret);
}

static void a_well_formed_file_parses(void **state)
{
	(void)state;
	static const char csv[] = "\xEF\xBB\xBF"
				  "card_serial,resident_code\r\n"
				  "1A2B,12345678901\r\n"
				  "0,00000000001\r\n"
				  "\r\n"
				  "FFEE,X9";
	struct linkage_batch *b;
	char err[256];
	assert_int_equal(linkage_parse(csv, strlen(csv), &b, err, sizeof err), 0);
	assert_int_equal(linkage_batch_count(b), 3);
	linkage_batch_free(b);
}

static void bad_lines_are_refused_by_line_number_without_values(void **state)
{
	(void)state;
	refused("serial,code\n1A,1\n", "line 1: expected the header", NULL);
	refused("card_serial,resident_code\n1A,1\n01A,2\n", "line 3: card_serial", "01A");
	refused("card_serial,resident_code\n1a,1\n", "line 2: card_serial", NULL);
	refused("card_serial,resident_code\n1A,12-34\n", "line 2: resident_code", "12-34");
	refused("card_serial,resident_code\n1A,1\n2B,2\n1A,3\n", "line 4: the card of line 2",
		"1A");
	refused("card_serial,resident_code\n1A,1,2\n", "line 2: expected two fields", NULL);
	refused("", "empty", NULL);
}

static struct linkage_batch *parse(const char *csv)
{
	struct linkage_batch *b;
	char err[256];
	if (linkage_parse(csv, strlen(csv), &b, err, sizeof err) != 0)
		fail_msg("parse: %s", err);
	return b;
}

static void an_import_is_durable_and_updates_or_replaces(void **state)
{
	(void)state;
	char err[256];
	struct linkage *lk;
	assert_int_equal(linkage_open(db, &lk, err, sizeof err), 0);
	assert_int_equal(linkage_count(lk), 0);

	struct linkage_batch *b = parse("card_serial,resident_code\n1A,111\n2B,222\n");
	assert_int_equal(linkage_store(db, b, false, err, sizeof err), 0);
	linkage_apply(lk, b, false);
	linkage_batch_free(b);
	assert_string_equal(linkage_lookup(lk, "1A"), "111");
	assert_null(linkage_lookup(lk, "3C"));
	linkage_free(lk);

	/* Reopened: the file has it.  An update changes 2B and adds 3C, keeping 1A. */
	assert_int_equal(linkage_open(db, &lk, err, sizeof err), 0);
	assert_int_equal(linkage_count(lk), 2);
	b = parse("card_serial,resident_code\n2B,999\n3C,333\n");
	assert_int_equal(linkage_store(db, b, false, err, sizeof err), 0);
	linkage_apply(lk, b, false);
	linkage_batch_free(b);
	assert_string_equal(linkage_lookup(lk, "1A"), "111");
	assert_string_equal(linkage_lookup(lk, "2B"), "999");
	assert_string_equal(linkage_lookup(lk, "3C"), "333");

	/* A replace leaves only what it names, in memory and in the file. */
	b = parse("card_serial,resident_code\n3C,333\n");
	assert_int_equal(linkage_store(db, b, true, err, sizeof err), 0);
	linkage_apply(lk, b, true);
	linkage_batch_free(b);
	assert_null(linkage_lookup(lk, "1A"));
	assert_int_equal(linkage_count(lk), 1);
	linkage_free(lk);
	assert_int_equal(linkage_open(db, &lk, err, sizeof err), 0);
	assert_int_equal(linkage_count(lk), 1);
	assert_string_equal(linkage_lookup(lk, "3C"), "333");
	linkage_free(lk);
}

static void an_unusable_database_is_an_error(void **state)
{
	(void)state;
	char err[256];
	struct linkage *lk = (struct linkage *)1;
	assert_int_equal(linkage_open("/nonexistent-dir/linkage.sqlite", &lk, err, sizeof err), -1);
	assert_null(lk);
	assert_non_null(strstr(err, "linkage table"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_well_formed_file_parses),
	    cmocka_unit_test(bad_lines_are_refused_by_line_number_without_values),
	    cmocka_unit_test_setup_teardown(an_import_is_durable_and_updates_or_replaces, setup,
					    teardown),
	    cmocka_unit_test(an_unusable_database_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
