/*
 * hours.h: service hours, closed days and fees per certificate type (DESIGN §3 step 6).
 *
 * Each of the seven types (indexed as record_certificate_types in record.h) has a rule:
 *
 *   opening, closing  "HH:MM" Asia/Tokyo wall time; open from opening (inclusive) to closing
 *                     (exclusive), so 06:30-23:00 is open at 06:30:00 and at 22:59:59, closed
 *                     at 23:00:00.  Closing may be "24:00" (end of the day); hours never span
 *                     midnight (closing after opening)
 *   closed days       up to HOURS_CLOSED_MAX month-day ranges "MM-DD" or "MM-DD..MM-DD",
 *                     both ends closed; a range whose end comes before its start wraps the
 *                     year ("12-29..01-03" is 29 Dec to 3 Jan).  "02-29" is allowed (leap years)
 *   always open       every hour of every day, closed days ignored (the demo config, §11)
 *   fee               yen per copy, 0..HOURS_FEE_MAX
 *
 * hours_table_init_defaults(): 06:30-23:00 for every type, closed 12-29..01-03, and the fees
 * most municipalities charge at a convenience-store kiosk (defaults only; each municipality
 * sets its own).
 *
 * Asia/Tokyo is UTC+9 all year (no DST since 1951), so local time is computed as now + 9 h;
 * the process TZ is never read or set.  A table is plain data: build it on one thread (config
 * load), then any number of threads may read it at once.
 */
#ifndef MDG_HOURS_H
#define MDG_HOURS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "record.h"

#define HOURS_CLOSED_MAX     16	    /* closed-day ranges per type */
#define HOURS_FEE_MAX	     100000 /* yen per copy */
#define HOURS_TOKYO_OFFSET_S (9 * 3600)

struct hours_closed_range {
	unsigned char from_month, from_day; /* 1..12, 1..31 */
	unsigned char to_month, to_day;
};

struct hours_rule {
	bool always_open;
	unsigned open_s;  /* seconds after Tokyo midnight, 0..86399 */
	unsigned close_s; /* seconds after Tokyo midnight, open_s+60..86400 */
	unsigned closed_count;
	struct hours_closed_range closed[HOURS_CLOSED_MAX];
	unsigned fee_yen;
};

struct hours_table {
	struct hours_rule rule[RECORD_CERTIFICATE_TYPE_COUNT];
};

enum hours_state {
	HOURS_OPEN = 0,
	HOURS_CLOSED_TIME = 1, /* a service day, outside opening..closing */
	HOURS_CLOSED_DAY = 2,  /* a closed day */
	HOURS_UNKNOWN_TYPE = 3 /* certificate index out of range */
};

/* Fills table with the defaults above. */
void hours_table_init_defaults(struct hours_table *table);

/*
 * Sets the hours and closed days of certificate (a type name; NULL sets every type), and
 * clears its always-open flag.  opening/closing "HH:MM"; closed is an array of closed_count
 * ranges as above (closed may be NULL when closed_count is 0).  Returns 0, or -1 with err
 * naming the bad argument and leaving the table unchanged.
 */
int hours_set(struct hours_table *table, const char *certificate, const char *opening,
	      const char *closing, const char *const *closed, size_t closed_count, char *err,
	      size_t err_size);

/* Makes certificate (NULL: every type) open at all hours on all days.  As hours_set. */
int hours_set_always_open(struct hours_table *table, const char *certificate, char *err,
			  size_t err_size);

/* Sets the fee per copy of certificate (NULL: every type).  As hours_set. */
int hours_set_fee(struct hours_table *table, const char *certificate, long yen, char *err,
		  size_t err_size);

/*
 * Whether certificate (index from record_certificate_index()) is served at now, and if not
 * why.  hours_is_open() is hours_state_at() == HOURS_OPEN.
 */
enum hours_state hours_state_at(const struct hours_table *table, int certificate, time_t now);
bool hours_is_open(const struct hours_table *table, int certificate, time_t now);

/* The fee per copy in yen of certificate (index), or -1 for an index out of range. */
long hours_fee(const struct hours_table *table, int certificate);

/*
 * The Tokyo calendar date and time of now: *year, *month (1..12), *day (1..31),
 * *second_of_day (0..86399).  Any pointer may be NULL.  Thread-safe, no TZ.
 */
void hours_tokyo_time(time_t now, long long *year, unsigned *month, unsigned *day,
		      unsigned *second_of_day);

/*
 * A short human description of certificate's hours for a 403 detail, e.g. "06:30-23:00,
 * closed 12-29..01-03"; writes at most size bytes into out.  No personal data.
 */
void hours_describe(const struct hours_table *table, int certificate, char *out, size_t size);

#endif
