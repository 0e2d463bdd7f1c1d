/*
 * test_hours.c: service hours, closed days and fees (core/hours.c).
 *
 * Times are written as Asia/Tokyo wall times and turned into time_t by the test's own
 * arithmetic (Tokyo = UTC+9), cross-checked against fixed epoch values.  What must hold: the
 * opening minute is open and the closing minute is closed; 29 Dec to 3 Jan are closed by
 * default and 4 Jan is open; the Tokyo day decides, not the UTC day; a closed range may wrap
 * the year; always-open ignores hours and closed days; a bad setting is refused and changes
 * nothing; the process TZ plays no part.  Environment: none (TZ is set by one test itself).
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, setenv, clock_gettime */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hours.h"

static long long days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

/* The instant of a Tokyo wall time. */
static time_t tokyo(int y, int mo, int d, int h, int mi, int s)
{
	return (time_t)(days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
			s - 9 * 3600);
}

static int seal(void)
{
	return record_certificate_index("seal");
}

static void the_test_clock_agrees_with_fixed_epoch_values(void **state)
{
	(void)state;
	/* 2026-06-15T21:30:00Z is 2026-06-16 06:30:00 in Tokyo. */
	assert_int_equal(tokyo(2026, 6, 16, 6, 30, 0), 1781559000);
	assert_int_equal(tokyo(2026, 6, 16, 0, 0, 0), 1781535600);
	long long y;
	unsigned m, d, s;
	hours_tokyo_time(1781559000, &y, &m, &d, &s);
	assert_int_equal(y, 2026);
	assert_int_equal(m, 6);
	assert_int_equal(d, 16);
	assert_int_equal(s, 6 * 3600 + 30 * 60);
	hours_tokyo_time(-1, &y, &m, &d, &s); /* 1970-01-01 08:59:59 Tokyo */
	assert_int_equal(y, 1970);
	assert_int_equal(m, 1);
	assert_int_equal(d, 1);
	assert_int_equal(s, 8 * 3600 + 59 * 60 + 59);
	hours_tokyo_time(tokyo(2024, 2, 29, 23, 59, 59), &y, &m, &d, &s);
	assert_int_equal(m * 100 + d, 229);
}

static void opening_minute_is_open_and_closing_minute_is_closed(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	for (int c = 0; c < RECORD_CERTIFICATE_TYPE_COUNT; c++) {
		assert_int_equal(hours_state_at(&t, c, tokyo(2026, 6, 16, 6, 29, 59)),
				 HOURS_CLOSED_TIME);
		assert_true(hours_is_open(&t, c, tokyo(2026, 6, 16, 6, 30, 0)));
		assert_true(hours_is_open(&t, c, tokyo(2026, 6, 16, 12, 0, 0)));
		assert_true(hours_is_open(&t, c, tokyo(2026, 6, 16, 22, 59, 59)));
		assert_int_equal(hours_state_at(&t, c, tokyo(2026, 6, 16, 23, 0, 0)),
				 HOURS_CLOSED_TIME);
		assert_false(hours_is_open(&t, c, tokyo(2026, 6, 16, 0, 0, 0)));
		assert_false(hours_is_open(&t, c, tokyo(2026, 6, 16, 23, 59, 59)));
	}
}

static void new_year_holidays_are_closed_by_default(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	assert_true(hours_is_open(&t, seal(), tokyo(2026, 12, 28, 12, 0, 0)));
	assert_true(hours_is_open(&t, seal(), tokyo(2026, 12, 28, 22, 59, 59)));
	for (int d = 29; d <= 31; d++) {
		assert_int_equal(hours_state_at(&t, seal(), tokyo(2026, 12, d, 12, 0, 0)),
				 HOURS_CLOSED_DAY);
	}
	for (int d = 1; d <= 3; d++)
		assert_int_equal(hours_state_at(&t, seal(), tokyo(2027, 1, d, 12, 0, 0)),
				 HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, seal(), tokyo(2026, 12, 29, 6, 30, 0)),
			 HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, seal(), tokyo(2027, 1, 3, 22, 59, 59)),
			 HOURS_CLOSED_DAY);
	assert_true(hours_is_open(&t, seal(), tokyo(2027, 1, 4, 6, 30, 0)));
	assert_false(hours_is_open(&t, seal(), tokyo(2027, 1, 4, 6, 29, 59)));
}

static void the_tokyo_day_decides_not_the_utc_day(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	/* 2026-12-28T15:00:00Z is already 29 Dec 00:00 in Tokyo: a closed day. */
	assert_int_equal(hours_state_at(&t, seal(), 1798470000), HOURS_CLOSED_DAY);
	/* 2026-12-28T14:59:59Z is 28 Dec 23:59:59 in Tokyo: a service day, after closing. */
	assert_int_equal(hours_state_at(&t, seal(), 1798469999), HOURS_CLOSED_TIME);
	/* 2027-01-03T15:00:00Z is 4 Jan 00:00 in Tokyo; UTC still says 3 Jan. */
	assert_int_equal(hours_state_at(&t, seal(), 1798988400), HOURS_CLOSED_TIME);
	assert_true(hours_is_open(&t, seal(), 1798988400 + 6 * 3600 + 30 * 60));
	/* 2026-06-15T21:30:00Z: 21:30 in UTC is outside the hours, 06:30 in Tokyo is inside. */
	assert_true(hours_is_open(&t, seal(), 1781559000));
	assert_false(hours_is_open(&t, seal(), 1781558999));
}

static void a_closed_range_may_wrap_the_year(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	char err[256];
	const char *closed[] = {"12-31..01-01", "05-03..05-05", "02-29"};
	assert_int_equal(hours_set(&t, "koseki-full", "08:30", "17:15", closed, 3, err, sizeof err),
			 0);
	int k = record_certificate_index("koseki-full");
	assert_int_equal(hours_state_at(&t, k, tokyo(2026, 12, 30, 9, 0, 0)), HOURS_OPEN);
	assert_int_equal(hours_state_at(&t, k, tokyo(2026, 12, 31, 9, 0, 0)), HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, k, tokyo(2027, 1, 1, 9, 0, 0)), HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, k, tokyo(2027, 1, 2, 9, 0, 0)), HOURS_OPEN);
	assert_int_equal(hours_state_at(&t, k, tokyo(2027, 5, 2, 9, 0, 0)), HOURS_OPEN);
	assert_int_equal(hours_state_at(&t, k, tokyo(2027, 5, 4, 9, 0, 0)), HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, k, tokyo(2028, 2, 29, 9, 0, 0)), HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, k, tokyo(2028, 3, 1, 9, 0, 0)), HOURS_OPEN);
	assert_int_equal(hours_state_at(&t, k, tokyo(2027, 1, 2, 8, 29, 59)), HOURS_CLOSED_TIME);
	assert_int_equal(hours_state_at(&t, k, tokyo(2027, 1, 2, 17, 15, 0)), HOURS_CLOSED_TIME);
	/* The other types keep the defaults. */
	assert_int_equal(hours_state_at(&t, seal(), tokyo(2026, 12, 30, 9, 0, 0)),
			 HOURS_CLOSED_DAY);
	assert_int_equal(hours_state_at(&t, seal(), tokyo(2027, 5, 4, 9, 0, 0)), HOURS_OPEN);

	/* No closed days at all, and a day that ends at midnight. */
	assert_int_equal(hours_set(&t, NULL, "00:00", "24:00", NULL, 0, err, sizeof err), 0);
	for (int c = 0; c < RECORD_CERTIFICATE_TYPE_COUNT; c++) {
		assert_true(hours_is_open(&t, c, tokyo(2027, 1, 1, 0, 0, 0)));
		assert_true(hours_is_open(&t, c, tokyo(2027, 1, 1, 23, 59, 59)));
	}
}

static void always_open_ignores_hours_and_closed_days(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	char err[256];
	assert_int_equal(hours_set_always_open(&t, NULL, err, sizeof err), 0);
	for (int c = 0; c < RECORD_CERTIFICATE_TYPE_COUNT; c++) {
		assert_true(hours_is_open(&t, c, tokyo(2027, 1, 1, 3, 0, 0)));
		assert_true(hours_is_open(&t, c, tokyo(2026, 6, 16, 23, 0, 0)));
		assert_true(hours_is_open(&t, c, tokyo(2026, 6, 16, 6, 29, 59)));
	}
	/* Setting hours again ends always-open for that type only. */
	assert_int_equal(hours_set(&t, "seal", "06:30", "23:00", NULL, 0, err, sizeof err), 0);
	assert_false(hours_is_open(&t, seal(), tokyo(2026, 6, 16, 3, 0, 0)));
	assert_true(hours_is_open(&t, 0, tokyo(2026, 6, 16, 3, 0, 0)));
	char text[128];
	hours_describe(&t, 0, text, sizeof text);
	assert_string_equal(text, "open at all hours on all days");
}

static void fees_have_kiosk_defaults_and_can_be_set(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	static const struct {
		const char *type;
		long fee;
	} want[] = {
	    {"residence", 200},	       {"residence-record", 200}, {"seal", 200},
	    {"tax-income", 200},       {"koseki-full", 350},	  {"koseki-individual", 350},
	    {"koseki-attachment", 200}};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		assert_int_equal(hours_fee(&t, record_certificate_index(want[i].type)),
				 want[i].fee);
	char err[256];
	assert_int_equal(hours_set_fee(&t, "residence", 100, err, sizeof err), 0);
	assert_int_equal(hours_fee(&t, 0), 100);
	assert_int_equal(hours_set_fee(&t, "seal", 0, err, sizeof err), 0);
	assert_int_equal(hours_fee(&t, seal()), 0);
	assert_int_equal(hours_set_fee(&t, "seal", -1, err, sizeof err), -1);
	assert_int_equal(hours_set_fee(&t, "seal", HOURS_FEE_MAX + 1, err, sizeof err), -1);
	assert_int_equal(hours_set_fee(&t, "passport", 100, err, sizeof err), -1);
	assert_int_equal(hours_fee(&t, seal()), 0);
	assert_int_equal(hours_fee(&t, -1), -1);
	assert_int_equal(hours_fee(&t, RECORD_CERTIFICATE_TYPE_COUNT), -1);
	assert_int_equal(hours_state_at(&t, RECORD_CERTIFICATE_TYPE_COUNT, 0), HOURS_UNKNOWN_TYPE);
}

static void a_bad_setting_is_refused_and_changes_nothing(void **state)
{
	(void)state;
	struct hours_table t, before;
	hours_table_init_defaults(&t);
	before = t;
	char err[256];
	const char *good[] = {"12-29..01-03"};
	static const struct {
		const char *type, *open, *close, *closed;
	} bad[] = {
	    {"passport", "06:30", "23:00", NULL},  {"seal", "6:30", "23:00", NULL},
	    {"seal", "06:60", "23:00", NULL},	   {"seal", "24:00", "24:00", NULL},
	    {"seal", "06:30", "24:01", NULL},	   {"seal", "06:30", "25:00", NULL},
	    {"seal", "23:00", "06:30", NULL},	   {"seal", "06:30", "06:30", NULL},
	    {"seal", "06:30", "23:00", "13-01"},   {"seal", "06:30", "23:00", "02-30"},
	    {"seal", "06:30", "23:00", "04-31"},   {"seal", "06:30", "23:00", "12-29-01-03"},
	    {"seal", "06:30", "23:00", "12-29.."}, {"seal", "06:30", "23:00", "1229"},
	    {"seal", NULL, "23:00", NULL},	   {"seal", "06:30", "", NULL},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *closed[] = {bad[i].closed};
		err[0] = '\0';
		assert_int_equal(hours_set(&t, bad[i].type, bad[i].open, bad[i].close,
					   bad[i].closed ? closed : good, 1, err, sizeof err),
				 -1);
		assert_true(err[0] != '\0');
		assert_memory_equal(&t, &before, sizeof t);
	}
	const char *many[HOURS_CLOSED_MAX + 1];
	for (int i = 0; i <= HOURS_CLOSED_MAX; i++)
		many[i] = "05-05";
	assert_int_equal(
	    hours_set(&t, "seal", "06:30", "23:00", many, HOURS_CLOSED_MAX + 1, err, sizeof err),
	    -1);
	assert_int_equal(hours_set(&t, "seal", "06:30", "23:00", NULL, 1, err, sizeof err), -1);
	assert_int_equal(hours_set_always_open(&t, "passport", err, sizeof err), -1);
	assert_memory_equal(&t, &before, sizeof t);
	assert_int_equal(
	    hours_set(&t, "seal", "06:30", "23:00", many, HOURS_CLOSED_MAX, err, sizeof err), 0);
}

static void the_process_time_zone_plays_no_part(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	/* Set a far-away zone; the answers must not change.  (setenv is the test's, not hours'.) */
	setenv("TZ", "America/Los_Angeles", 1);
	tzset();
	assert_true(hours_is_open(&t, seal(), tokyo(2026, 6, 16, 6, 30, 0)));
	assert_false(hours_is_open(&t, seal(), tokyo(2026, 6, 16, 6, 29, 59)));
	assert_int_equal(hours_state_at(&t, seal(), 1798470000), HOURS_CLOSED_DAY);
	unsetenv("TZ");
	tzset();
}

static void hours_describe_says_the_hours_and_closed_days(void **state)
{
	(void)state;
	struct hours_table t;
	hours_table_init_defaults(&t);
	char text[128];
	hours_describe(&t, seal(), text, sizeof text);
	assert_string_equal(text, "06:30-23:00 Asia/Tokyo, closed 12-29..01-03");
	char tiny[8];
	hours_describe(&t, seal(), tiny, sizeof tiny);
	assert_string_equal(tiny, "06:30-2");
	hours_describe(&t, -1, text, sizeof text);
	assert_string_equal(text, "not offered");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(the_test_clock_agrees_with_fixed_epoch_values),
	    cmocka_unit_test(opening_minute_is_open_and_closing_minute_is_closed),
	    cmocka_unit_test(new_year_holidays_are_closed_by_default),
	    cmocka_unit_test(the_tokyo_day_decides_not_the_utc_day),
	    cmocka_unit_test(a_closed_range_may_wrap_the_year),
	    cmocka_unit_test(always_open_ignores_hours_and_closed_days),
	    cmocka_unit_test(fees_have_kiosk_defaults_and_can_be_set),
	    cmocka_unit_test(a_bad_setting_is_refused_and_changes_nothing),
	    cmocka_unit_test(the_process_time_zone_plays_no_part),
	    cmocka_unit_test(hours_describe_says_the_hours_and_closed_days),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
