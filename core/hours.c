/*
 * hours.c: service hours, closed days and fees per certificate type (contract in hours.h).
 *
 * Invariant of every rule in a table: open_s < close_s <= 86400, closed_count <=
 * HOURS_CLOSED_MAX, every closed range is a valid month-day pair, fee_yen <= HOURS_FEE_MAX.
 * The setters validate everything before they write, so a failed call leaves the table as it
 * was (a config reload that fails keeps the running rules).  Tokyo time is UTC+9 computed by
 * hand (days-since-epoch arithmetic), never through localtime()/TZ, so the readers are
 * thread-safe and independent of the host's time zone.  Readers take a const table only.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "hours.h"

#define HOURS_DEFAULT_OPEN_S  (6 * 3600 + 30 * 60) /* 06:30 */
#define HOURS_DEFAULT_CLOSE_S (23 * 3600)	   /* 23:00 */
#define HOURS_DAY_S	      86400

/*
 * Default fees per copy, in the order of record_certificate_types.  These are the fees most
 * municipalities charge at a convenience-store kiosk; they are defaults only, each
 * municipality sets its own (several charge less at the kiosk than at the counter).
 */
static const unsigned hours_default_fee[RECORD_CERTIFICATE_TYPE_COUNT] = {
    200, /* residence */
    200, /* residence-record */
    200, /* seal */
    200, /* tax-income */
    350, /* koseki-full */
    350, /* koseki-individual */
    200, /* koseki-attachment */
};

/* A string for an error message, which may be NULL ("(none)"). */
static const char *hours_shown(const char *s)
{
	return s ? s : "(none)";
}

void hours_table_init_defaults(struct hours_table *table)
{
	memset(table, 0, sizeof *table);
	for (int i = 0; i < RECORD_CERTIFICATE_TYPE_COUNT; i++) {
		struct hours_rule *r = &table->rule[i];
		r->open_s = HOURS_DEFAULT_OPEN_S;
		r->close_s = HOURS_DEFAULT_CLOSE_S;
		r->closed_count = 1;
		r->closed[0] = (struct hours_closed_range){12, 29, 1, 3};
		r->fee_yen = hours_default_fee[i];
	}
}

/* The index range [*first, *last] a certificate argument names; -1 for an unknown type. */
static int hours_types(const char *certificate, int *first, int *last)
{
	if (certificate == NULL) {
		*first = 0;
		*last = RECORD_CERTIFICATE_TYPE_COUNT - 1;
		return 0;
	}
	*first = *last = record_certificate_index(certificate);
	return *first < 0 ? -1 : 0;
}

/* Two decimal digits at s, or -1. */
static int hours_two_digits(const char *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* "HH:MM" (00:00..24:00) into seconds after midnight, or -1. */
static long hours_parse_clock(const char *s)
{
	if (s == NULL || strlen(s) != 5 || s[2] != ':')
		return -1;
	int h = hours_two_digits(s), m = hours_two_digits(s + 3);
	if (h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0))
		return -1;
	return h * 3600L + m * 60L;
}

/* "MM-DD" at s (exactly 5 characters) into month and day; Feb 29 allowed.  0 or -1. */
static int hours_parse_month_day(const char *s, unsigned char *month, unsigned char *day)
{
	static const unsigned char days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (s[2] != '-')
		return -1;
	int m = hours_two_digits(s), d = hours_two_digits(s + 3);
	if (m < 1 || m > 12 || d < 1 || d > days[m - 1])
		return -1;
	*month = (unsigned char)m;
	*day = (unsigned char)d;
	return 0;
}

/* "MM-DD" or "MM-DD..MM-DD" into *out, or -1. */
static int hours_parse_range(const char *s, struct hours_closed_range *out)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 5) {
		if (hours_parse_month_day(s, &out->from_month, &out->from_day) != 0)
			return -1;
		out->to_month = out->from_month;
		out->to_day = out->from_day;
		return 0;
	}
	if (n != 12 || s[5] != '.' || s[6] != '.')
		return -1;
	if (hours_parse_month_day(s, &out->from_month, &out->from_day) != 0 ||
	    hours_parse_month_day(s + 7, &out->to_month, &out->to_day) != 0)
		return -1;
	return 0;
}

int hours_set(struct hours_table *table, const char *certificate, const char *opening,
	      const char *closing, const char *const *closed, size_t closed_count, char *err,
	      size_t err_size)
{
	int first, last;
	if (hours_types(certificate, &first, &last) != 0)
		return errbuf_set(err, err_size, "unknown certificate type %s",
				  hours_shown(certificate));
	long open_s = hours_parse_clock(opening), close_s = hours_parse_clock(closing);
	if (open_s < 0 || open_s >= HOURS_DAY_S)
		return errbuf_set(err, err_size,
				  "opening time %s must be HH:MM between 00:00 and 23:59",
				  hours_shown(opening));
	if (close_s < 0)
		return errbuf_set(err, err_size,
				  "closing time %s must be HH:MM between 00:01 and 24:00",
				  hours_shown(closing));
	if (close_s <= open_s)
		return errbuf_set(err, err_size,
				  "closing time %s must be after the opening time (hours cannot "
				  "span midnight; use 24:00 for the end of the day)",
				  hours_shown(closing));
	if (closed_count > HOURS_CLOSED_MAX)
		return errbuf_set(err, err_size, "too many closed-day ranges (at most %d)",
				  HOURS_CLOSED_MAX);
	struct hours_closed_range ranges[HOURS_CLOSED_MAX];
	for (size_t i = 0; i < closed_count; i++) {
		if (closed == NULL || hours_parse_range(closed[i], &ranges[i]) != 0)
			return errbuf_set(
			    err, err_size,
			    "closed day %s must be MM-DD or MM-DD..MM-DD (a range may "
			    "wrap the year, e.g. 12-29..01-03)",
			    hours_shown(closed ? closed[i] : NULL));
	}
	for (int t = first; t <= last; t++) {
		struct hours_rule *r = &table->rule[t];
		r->always_open = false;
		r->open_s = (unsigned)open_s;
		r->close_s = (unsigned)close_s;
		r->closed_count = (unsigned)closed_count;
		if (closed_count > 0)
			memcpy(r->closed, ranges, closed_count * sizeof ranges[0]);
	}
	return 0;
}

int hours_set_always_open(struct hours_table *table, const char *certificate, char *err,
			  size_t err_size)
{
	int first, last;
	if (hours_types(certificate, &first, &last) != 0)
		return errbuf_set(err, err_size, "unknown certificate type %s",
				  hours_shown(certificate));
	for (int t = first; t <= last; t++)
		table->rule[t].always_open = true;
	return 0;
}

int hours_set_fee(struct hours_table *table, const char *certificate, long yen, char *err,
		  size_t err_size)
{
	int first, last;
	if (hours_types(certificate, &first, &last) != 0)
		return errbuf_set(err, err_size, "unknown certificate type %s",
				  hours_shown(certificate));
	if (yen < 0 || yen > HOURS_FEE_MAX)
		return errbuf_set(err, err_size, "fee must be 0 to %d yen", HOURS_FEE_MAX);
	for (int t = first; t <= last; t++)
		table->rule[t].fee_yen = (unsigned)yen;
	return 0;
}

void hours_tokyo_time(time_t now, long long *year, unsigned *month, unsigned *day,
		      unsigned *second_of_day)
{
	long long local = (long long)now + HOURS_TOKYO_OFFSET_S;
	long long days = local / HOURS_DAY_S;
	long long sec = local % HOURS_DAY_S;
	if (sec < 0) { /* floor division for times before the epoch */
		sec += HOURS_DAY_S;
		days--;
	}
	/* H. Hinnant's civil_from_days: proleptic Gregorian date of a day count. */
	long long z = days + 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;
	if (year != NULL)
		*year = (long long)yoe + era * 400 + (m <= 2);
	if (month != NULL)
		*month = m;
	if (day != NULL)
		*day = d;
	if (second_of_day != NULL)
		*second_of_day = (unsigned)sec;
}

/* Whether month-day md (month * 100 + day) is in range r, wrapping the year if r does. */
static bool hours_in_range(const struct hours_closed_range *r, unsigned md)
{
	unsigned from = r->from_month * 100u + r->from_day, to = r->to_month * 100u + r->to_day;
	if (from <= to)
		return md >= from && md <= to;
	return md >= from || md <= to;
}

enum hours_state hours_state_at(const struct hours_table *table, int certificate, time_t now)
{
	if (certificate < 0 || certificate >= RECORD_CERTIFICATE_TYPE_COUNT)
		return HOURS_UNKNOWN_TYPE;
	const struct hours_rule *r = &table->rule[certificate];
	if (r->always_open)
		return HOURS_OPEN;
	unsigned month, day, sec;
	hours_tokyo_time(now, NULL, &month, &day, &sec);
	unsigned md = month * 100 + day;
	for (unsigned i = 0; i < r->closed_count; i++) {
		if (hours_in_range(&r->closed[i], md))
			return HOURS_CLOSED_DAY;
	}
	return sec >= r->open_s && sec < r->close_s ? HOURS_OPEN : HOURS_CLOSED_TIME;
}

bool hours_is_open(const struct hours_table *table, int certificate, time_t now)
{
	return hours_state_at(table, certificate, now) == HOURS_OPEN;
}

long hours_fee(const struct hours_table *table, int certificate)
{
	if (certificate < 0 || certificate >= RECORD_CERTIFICATE_TYPE_COUNT)
		return -1;
	return (long)table->rule[certificate].fee_yen;
}

void hours_describe(const struct hours_table *table, int certificate, char *out, size_t size)
{
	if (out == NULL || size == 0)
		return;
	out[0] = '\0';
	if (certificate < 0 || certificate >= RECORD_CERTIFICATE_TYPE_COUNT) {
		snprintf(out, size, "not offered");
		return;
	}
	const struct hours_rule *r = &table->rule[certificate];
	if (r->always_open) {
		snprintf(out, size, "open at all hours on all days");
		return;
	}
	size_t n = (size_t)snprintf(out, size, "%02u:%02u-%02u:%02u Asia/Tokyo", r->open_s / 3600,
				    r->open_s / 60 % 60, r->close_s / 3600, r->close_s / 60 % 60);
	for (unsigned i = 0; i < r->closed_count && n < size; i++) {
		const struct hours_closed_range *c = &r->closed[i];
		n += (size_t)snprintf(out + n, size - n, "%s%02u-%02u..%02u-%02u",
				      i == 0 ? ", closed " : ", ", c->from_month, c->from_day,
				      c->to_month, c->to_day);
	}
}
