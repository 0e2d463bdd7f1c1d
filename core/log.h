/*
 * log.h: structured logs, one JSON object per line on stderr (journald keeps them).
 *
 * Every line has "ts", "level" and "event"; callers add fields with a jansson pack format.
 * Never pass a name, address, card serial, resident code or My Number (DESIGN §10): log
 * identifiers that are not personal (request ids, issuance ids, digests) instead.
 *
 * Lines are appended to a buffer under a mutex, so any thread may log.  The loop thread calls
 * log_flush() once per loop iteration, so a burst of access lines costs one write(2), not one
 * per request; warnings and errors are written at once.
 */
#ifndef MDG_LOG_H
#define MDG_LOG_H

#include <stdarg.h>

#include <jansson.h> /* json_int_t for "I" fields */

enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR,
};

/* Lines below this level are dropped.  Default LOG_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/*
 * Writes one line: {"ts":…, "level":…, "event": event, …fields}.  fields_fmt is a jansson
 * json_pack() object format such as "{s:s, s:i}" followed by its arguments, or NULL.
 */
void log_event(enum log_level level, const char *event, const char *fields_fmt, ...);

/*
 * Writes one line whose extra fields are already JSON: fields is the inside of an object
 * ("\"a\":1,\"b\":\"x\""), appended after "event".  Only for hot paths whose values are
 * the program's own tokens (route names, codes, hex ids) that need no escaping; everything
 * else goes through log_event(), which escapes.
 */
void log_event_preformatted(enum log_level level, const char *event, const char *fields);

/* True when a line of this level would be written (skip building expensive fields). */
int log_enabled(enum log_level level);

/* Writes out what is buffered.  Safe from any thread. */
void log_flush(void);

#endif
