/*
 * log.c: JSON-lines logging to stderr.
 *
 * Lines are built with jansson (escaping is its job, not ours) and appended to one buffer
 * guarded by a mutex; log_flush() writes the buffer with write(2).  Lines of level warn and
 * above, and any line that would overflow the buffer, flush at once, so nothing important waits
 * for the next loop iteration.  A failed write is dropped rather than retried forever: the
 * daemon must not stall on a full pipe to journald.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

#define LOG_BUFFER_BYTES (64 * 1024)

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buffer[LOG_BUFFER_BYTES];
static size_t log_buffered;
static int log_min_level = LOG_INFO;

void log_set_level(enum log_level level)
{
	__atomic_store_n(&log_min_level, (int)level, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
	return (enum log_level)__atomic_load_n(&log_min_level, __ATOMIC_RELAXED);
}

int log_enabled(enum log_level level)
{
	return (int)level >= __atomic_load_n(&log_min_level, __ATOMIC_RELAXED);
}

/* Writes len bytes to stderr, retrying on EINTR and short writes.  Caller holds log_lock. */
static void log_write_all(const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		data += n;
		len -= (size_t)n;
	}
}

static void log_flush_locked(void)
{
	log_write_all(log_buffer, log_buffered);
	log_buffered = 0;
}

void log_flush(void)
{
	pthread_mutex_lock(&log_lock);
	log_flush_locked();
	pthread_mutex_unlock(&log_lock);
}

/*
 * Formats the current UTC time with milliseconds, e.g. 2026-11-27T09:00:00.123Z, into out
 * (at least 25 bytes).  The date and time to the second are formatted once per second and
 * thread: this runs for every access line.
 */
static void log_timestamp(char *out, size_t size)
{
	static _Thread_local time_t cached_sec = -1;
	static _Thread_local char cached[24];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&now.tv_sec, &tm);
		strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = now.tv_sec;
	}
	unsigned ms = (unsigned)(now.tv_nsec / 1000000L);
	snprintf(out, size, "%s.%c%c%cZ", cached, '0' + ms / 100, '0' + ms / 10 % 10,
		 '0' + ms % 10);
}

/* Appends one complete line (without its newline) to the buffer. */
static void log_append_line(enum log_level level, const char *text, size_t len)
{
	pthread_mutex_lock(&log_lock);
	if (log_buffered + len + 1 > sizeof log_buffer)
		log_flush_locked();
	if (len + 1 > sizeof log_buffer) {
		log_write_all(text, len);
		log_write_all("\n", 1);
	} else {
		memcpy(log_buffer + log_buffered, text, len);
		log_buffer[log_buffered + len] = '\n';
		log_buffered += len + 1;
	}
	if (level >= LOG_WARN)
		log_flush_locked();
	pthread_mutex_unlock(&log_lock);
}

void log_event_preformatted(enum log_level level, const char *event, const char *fields)
{
	if (!log_enabled(level))
		return;
	/* Assembled piece by piece: printf would cost more than the rest of a request. */
	char ts[32], line[2048];
	log_timestamp(ts, sizeof ts);
	const char *parts[] = {"{\"ts\":\"",
			       ts,
			       "\",\"level\":\"",
			       log_level_names[level],
			       "\",\"event\":\"",
			       event,
			       fields[0] ? "\"," : "\"",
			       fields,
			       "}"};
	size_t len = 0;
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		size_t n = strlen(parts[i]);
		if (len + n >= sizeof line)
			return;
		memcpy(line + len, parts[i], n);
		len += n;
	}
	log_append_line(level, line, len);
}

void log_event(enum log_level level, const char *event, const char *fields_fmt, ...)
{
	if (!log_enabled(level))
		return;

	char ts[64];
	log_timestamp(ts, sizeof ts);
	json_t *line =
	    json_pack("{s:s, s:s, s:s}", "ts", ts, "level", log_level_names[level], "event", event);
	if (line == NULL)
		return;
	if (fields_fmt != NULL) {
		va_list ap;
		json_error_t jerr;
		va_start(ap, fields_fmt);
		json_t *fields = json_vpack_ex(&jerr, 0, fields_fmt, ap);
		va_end(ap);
		if (fields != NULL)
			json_object_update(line, fields);
		else
			json_object_set_new(line, "log_format_error", json_string(jerr.text));
		json_decref(fields);
	}

	char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(line);
	if (text == NULL)
		return;
	log_append_line(level, text, strlen(text));
	free(text);
}
